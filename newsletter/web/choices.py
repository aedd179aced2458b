"""A reader's choices (edition, cadence, topics) in Korean and English words,
for the confirmation mail and the web pages alike.

    choice_texts(edition, cadence, topics, weekly_day) -> {"edition_ko": ..., ...}

Plain text values: the templates escape them (tags are digest text).
"""

from __future__ import annotations

from newsletter.model import Cadence, Edition

EDITION_NAMES: dict[str, tuple[str, str]] = {
    "ko": ("한국어 코멘트", "Korean comments"),
    "en": ("영어 코멘트", "English comments"),
    "both": ("한국어와 영어 코멘트", "Korean and English comments"),
}

# schedule.weekly_day in Korean and English.
WEEKDAY_NAMES: dict[str, tuple[str, str]] = {
    "monday": ("월요일", "Monday"),
    "tuesday": ("화요일", "Tuesday"),
    "wednesday": ("수요일", "Wednesday"),
    "thursday": ("목요일", "Thursday"),
    "friday": ("금요일", "Friday"),
    "saturday": ("토요일", "Saturday"),
    "sunday": ("일요일", "Sunday"),
}
CADENCE_NAMES: dict[str, tuple[str, str]] = {
    "daily": ("매일", "Daily"),
    "weekly": ("매주", "Weekly"),
}


def edition_texts(edition: Edition) -> dict[str, str]:
    """The Korean and English names of an edition: edition_ko, edition_en."""
    ko, en = EDITION_NAMES[edition.value]
    return {"edition_ko": ko, "edition_en": en}


def choice_texts(
    edition: Edition, cadence: Cadence, topics: tuple[str, ...], weekly_day: str
) -> dict[str, str]:
    """Edition, cadence and topics in words: edition_ko/en, cadence_ko ("매일",
    "매주 월요일"), cadence_en ("daily", "weekly, on Mondays"), topics_ko
    ("#moe, #rl"; "" for every paper) and topics_en ("moe, rl"; ""). `weekly_day`
    is schedule.weekly_day."""
    if cadence is Cadence.WEEKLY:
        day_ko, day_en = WEEKDAY_NAMES[weekly_day]
        cadence_ko, cadence_en = f"매주 {day_ko}", f"weekly, on {day_en}s"
    else:
        cadence_ko, cadence_en = "매일", "daily"
    return edition_texts(edition) | {
        "cadence_ko": cadence_ko,
        "cadence_en": cadence_en,
        "topics_ko": ", ".join(f"#{t}" for t in topics),
        "topics_en": ", ".join(topics),
    }

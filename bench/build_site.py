"""Benchmark: a full site build from N digests, then an incremental publish of one day.

    python bench/build_site.py [N]        (N defaults to 1000)

Digests are generated deterministically (fixed seed, Hangul included), written
with digest.format_digest into a temporary folder and read back with the real
parser, then published into a temporary public/ folder.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path

from newsletter.config import config_from_dict
from newsletter.digest import check_paths, format_digest
from newsletter.model import Digest, Entry
from newsletter.site import write_site

WORDS = [
    "model",
    "language",
    "training",
    "data",
    "scaling",
    "reasoning",
    "agent",
    "sparse",
    "attention",
    "token",
]
HANGUL = [
    "모델",
    "학습",
    "데이터",
    "추론",
    "성능",
    "방법",
    "결과",
    "실험",
    "구조",
    "효율",
    "개선",
    "제안",
]
TAGS = [
    *["moe", "rl", "reasoning", "agent", "efficiency", "long-context", "math", "code", "gpt-4.5"],
    "추론",
    "정렬",
]
TAGS += [f"topic-{i}" for i in range(40)]


def sentence(rng: random.Random, words: list[str], count: int) -> str:
    return " ".join(rng.choice(words) for _ in range(count)).capitalize() + "."


def make_entry(rng: random.Random, number: int) -> Entry:
    return Entry(
        title=f"{sentence(rng, WORDS, 7)[:-1]} {number}",
        authors=tuple(f"Author {rng.randrange(10_000)}" for _ in range(rng.randint(2, 12))),
        abstract=" ".join(sentence(rng, WORDS, 18) for _ in range(8)),
        comment_ko=sentence(rng, HANGUL, 25) + f" (https://arxiv.org/abs/2501.{number:05d})",
        comment_en=sentence(rng, WORDS, 30),
        tags=tuple(rng.sample(TAGS, rng.randint(1, 4))),
    )


def make_digest(rng: random.Random, date: dt.date) -> Digest:
    entries = tuple(make_entry(rng, rng.randrange(100_000)) for _ in range(rng.randint(3, 8)))
    return Digest(date, entries, f"{date}.txt")


def write_digests(folder: Path, count: int, rng: random.Random) -> dt.date:
    start = dt.date(2022, 1, 1)
    for day in range(count):
        date = start + dt.timedelta(days=day)
        (folder / f"{date}.txt").write_text(format_digest(make_digest(rng, date)), "utf-8")
    return start + dt.timedelta(days=count)


def timed(label: str, action):
    began = time.perf_counter()
    result = action()
    print(f"{label:<42} {time.perf_counter() - began:8.2f} s")
    return result


def main(count: int) -> None:
    rng = random.Random(20250404)
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
        root = Path(tmp)
        digests_dir = root / "digests"
        digests_dir.mkdir()
        next_day = write_digests(digests_dir, count, rng)
        config = config_from_dict(
            {"site": {"base_url": "https://example.org/papers/"}, "paths": {"public": "public"}},
            base=root,
        )

        def scan() -> list[Digest]:
            return [r.digest for r in check_paths([digests_dir]) if r.digest is not None]

        digests = timed(f"parse {count} digests", scan)
        full = timed(f"full build ({count} digests)", lambda: write_site(config, digests))
        files = len(full.written) + full.unchanged
        print(f"{'':<42} {files} files, {len(full.written)} written")
        again = timed("full rebuild, nothing changed", lambda: write_site(config, digests))
        assert again.written == (), again.written[:5]

        (digests_dir / f"{next_day}.txt").write_text(
            format_digest(make_digest(rng, next_day)), "utf-8"
        )
        digests = scan()
        publish = timed(
            f"incremental publish of {next_day}",
            lambda: write_site(config, digests, date=next_day),
        )
        print(f"{'':<42} {len(publish.written)} written, {publish.unchanged} unchanged")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)

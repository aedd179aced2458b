"""What a reader sees in an edition's email: order, abstracts, Outlook, the
preheader, the footer, bilingual `both`, and the wrapped text part."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re

import pytest
from helpers import edition_email, email_bodies, html_text, numbered_links, run_cli
from smtp_servers import Handler, mail_config, sample_digest, start_server

from newsletter.mail_checks import setup_warnings, shouting
from newsletter.model import Edition, Entry
from newsletter.render import paper_anchors
from newsletter.site import issue_files
from newsletter.text import columns
from newsletter.tokens import DEV_SECRET, UNSUBSCRIBE, sign_token

TOKEN = sign_token(DEV_SECRET, UNSUBSCRIBE, "reader@example.com")
PAGE = "https://papers.example.org/{}/2025-04-04/"


def mail(tmp_path, edition=Edition.KO, digest=None, **email):
    data = edition_email(mail_config(tmp_path, **email), digest or sample_digest(), edition)
    return email_bodies(data)


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("edition", list(Edition))
def test_each_paper_shows_title_authors_comments_then_abstract(tmp_path, edition):
    text, html = mail(tmp_path, edition, abstract_chars=-1)
    text, page = flat(text), flat(html_text(html))
    for entry in sample_digest().entries:
        comments = {
            Edition.KO: [entry.comment_ko],
            Edition.EN: [entry.comment_en],
            Edition.BOTH: [entry.comment_ko, entry.comment_en],
        }[edition]
        for shown in (text, page):
            order = [shown.index(entry.title), shown.index(", ".join(entry.authors))]
            order += [shown.index(comment) for comment in comments]
            order.append(shown.index(entry.abstract))
            assert order == sorted(order), (edition, entry.title)


def test_abstract_chars_shortens_with_read_more_to_the_papers_anchor(tmp_path, site_config):
    digest = sample_digest()
    text, html = mail(tmp_path, abstract_chars=100)
    anchors = paper_anchors([entry.title for entry in digest.entries])
    page = PAGE.format("ko")
    site = issue_files(site_config, digest)["ko/2025-04-04/index.html"].decode()
    paragraphs = re.findall(r'<p class="abstract"[^>]*>(.*?)</p>', html, re.S)
    for entry, anchor, paragraph in zip(digest.entries, anchors, paragraphs, strict=True):
        head, _, link = flat(paragraph).partition("… ")
        assert re.fullmatch(rf'<a href="{re.escape(page)}#{anchor}"[^>]*>전문 보기</a>', link)
        assert len(head) + 1 <= 100 and entry.abstract.startswith(head)
        assert f'id="{anchor}"' in site  # the link lands on the paper on the web page
    links = numbered_links(text)
    for anchor in anchors:
        assert f"{page}#{anchor}" in links.values()


def test_abstract_chars_zero_hides_and_minus_one_keeps_whole(tmp_path):
    digest = sample_digest()
    text, html = mail(tmp_path / "hide", abstract_chars=0)
    for entry in digest.entries:
        assert entry.abstract[:40] not in flat(text) and entry.abstract[:40] not in html
    assert html.count(">초록 보기</a>") == len(digest.entries)
    text, html = mail(tmp_path / "whole", abstract_chars=-1)
    for entry in digest.entries:
        assert entry.abstract in flat(text) and entry.abstract in flat(html_text(html))
    assert "전문 보기" not in html and "초록 보기" not in html


def test_outlook_gets_a_600_px_table(tmp_path):
    _text, html = mail(tmp_path)
    # The conditional table only Outlook for Windows (MSO) reads...
    mso = re.search(r"<!--\[if mso\]>(<table[^>]*>)<tr><td><!\[endif\]-->", html)
    assert mso and 'width="600"' in mso[1]
    assert "<!--[if mso]></td></tr></table><![endif]-->" in html
    # ... and the container keeps width="600" (premailer must not make it 100%),
    # with max-width for every other client.
    container = re.search(r'<table[^>]*class="container"[^>]*>', html)[0]
    assert 'width="600"' in container and "max-width:600px" in container


@pytest.mark.parametrize("edition", list(Edition))
def test_preheader_is_hidden_without_the_tricks_spam_filters_score(tmp_path, edition):
    _text, html = mail(tmp_path, edition)
    tag = re.search(r'<div class="preheader"[^>]*>', html)[0]
    style = re.search(r'style="([^"]*)"', tag)[1].replace(" ", "")
    assert "display:none" in style and "mso-hide:all" in style
    assert 'aria-hidden="true"' in tag
    assert "font-size" not in style and "line-height" not in style and "color" not in style
    # SpamAssassin's __FONT_INVIS (72_active.cf): a tiny font or transparent text.
    invisible = re.compile(
        r"<(?!style)[a-z]+\s[^>]{1,80}(?:font(?:-size)?\s*:\s*(?:0*[01](?:\.\d+)?"
        r"(?:px|pt|Q|vw|vh|vmin)|0+(?:\.\d+)?(?:cm|mm|pc|ch|rem|lh|vmax|%)|0+(?:\.0\d*)"
        r"(?:em|ex|in))(?:\s[a-z]|\s*[;'])|['\"\s;]color\s*:\s*transparent\s*[;'])[^>]{0,80}>\w",
        re.I,
    )
    assert not invisible.search(html)


def test_dark_mode_gives_separators_and_borders_their_own_colours(tmp_path):
    _text, html = mail(tmp_path)
    dark = re.search(r"@media \(prefers-color-scheme: dark\) \{(.*)\}\s*</style>", html, re.S)[1]
    rules = dict(re.findall(r"([^{}]+)\{([^{}]*)\}", dark))
    borders = " ".join(value for selector, value in rules.items() if ".entry" in selector)
    assert "border-bottom-color" in borders
    assert any("border-left-color" in value for value in rules.values())


def test_both_edition_is_bilingual(tmp_path):
    text, html = mail(tmp_path, Edition.BOTH, abstract_chars=100)
    page = flat(html_text(html))
    for pair in (
        "웹에서 보기 · View in browser",
        "전문 보기 · Read more",
        "논문 4편 · 4 papers",
        "수신 거부",
        "Unsubscribe",
        "구독 설정",
        "Preferences",
        "전달받은 메일인가요? 구독하기",
        "Forwarded this email? Subscribe",
        "ML Papers 구독을 신청하셔서 받는 메일입니다.",
        "You get this email because you subscribed to ML Papers.",
    ):
        assert pair in page and pair in flat(text), pair
    assert '<span lang="en">Read more</span>' in html
    assert re.search(r'<p lang="en"[^>]*>You get this email', html)
    assert "링크 · Links:" in text


@pytest.mark.parametrize("edition", list(Edition))
def test_footer_has_unsubscribe_preferences_address_and_subscribe(tmp_path, edition):
    text, html = mail(tmp_path, edition, postal_address="ML Papers\n1 Example-ro, Seoul 04524")
    footer = html[html.index('class="footer"') :]
    hrefs = re.findall(r'href="([^"]+)"', footer)
    assert f"https://papers.example.org/unsubscribe?token={TOKEN}" in hrefs
    assert f"https://papers.example.org/preferences?token={TOKEN}" in hrefs
    assert "https://papers.example.org/subscribe" in hrefs
    assert "ML Papers · 1 Example-ro, Seoul 04524" in html_text(footer)
    links = numbered_links(text)
    assert set(hrefs) <= set(links.values())
    assert "ML Papers · 1 Example-ro, Seoul 04524" in text


def test_smtp_without_a_postal_address_is_warned_at_check_and_publish(
    tmp_path, project, caplog, monkeypatch
):
    config = project / "config.yaml"
    config.write_text(
        config.read_text() + "email:\n  transport: smtp\n  smtp:\n    host: 127.0.0.1\n",
        encoding="utf-8",
    )
    checked = run_cli("check", cwd=project)
    assert "warning: email.postal_address is not set" in checked.stderr
    config.write_text(
        config.read_text() + "  postal_address: 1 Example-ro, Seoul\n", encoding="utf-8"
    )
    assert "postal_address" not in run_cli("check", cwd=project).stderr
    # publish (deliver_issue) says it too, when mail goes out through SMTP.
    from newsletter.deliver.issue import deliver_issue
    from newsletter.store import Store
    from newsletter.store.database import Database

    monkeypatch.setenv("NEWSLETTER_SECRET", "s" * 32)
    with start_server(Handler()) as server:
        smtp = {"host": server.host, "port": server.port, "security": "none"}
        settings = mail_config(tmp_path, transport="smtp", smtp=smtp)
        store = Store(Database(f"sqlite:///{tmp_path / 'nl.db'}"))
        store.subscribers.add("a@example.org", Edition.KO)
        now = dt.datetime(2025, 4, 4, 7, tzinfo=dt.UTC)
        with caplog.at_level(logging.WARNING, logger="newsletter"):
            report = deliver_issue(settings, store, sample_digest(), now=now)
    assert report.sent == 1
    assert "email.postal_address is not set" in caplog.text


def test_all_caps_subjects_are_warned_and_the_defaults_are_not(tmp_path):
    from newsletter.config import config_from_dict

    assert shouting("[ML 논문] 2025년 4월 4일 · 4편")  # its only letters: "ML"
    assert shouting("[NEWS] BIG DAY")
    assert not shouting("[ML Papers] 2025년 4월 4일 · 논문 4편")
    assert not shouting("[ML 논문 · Papers] 2025년 4월 4일 · 4편")
    assert not shouting("[ML]")  # short, one word: SpamAssassin leaves those
    assert not shouting("2025년 4월 4일 논문")  # no Latin letters at all
    default = config_from_dict({}, tmp_path)
    assert setup_warnings(default) == []
    subject = {"ko": "[ML 논문] {date} · {count}편"}
    loud = config_from_dict({"email": {"subject": subject}}, tmp_path)
    (warning,) = setup_warnings(loud)
    assert "email.subject.ko" in warning and "SUBJ_ALL_CAPS" in warning


LONG_URL = "https://example.org/" + "segment/" * 12 + "end"
HANGUL_RUN = "띄어쓰기없이아주길게이어지는한국어문장" * 3


def test_text_part_wraps_at_76_never_breaks_a_url_and_numbers_each_url_once(tmp_path):
    entry = Entry(
        "A Title",
        ("Kim",),
        f"Code at {LONG_URL} and again {LONG_URL}. " + "word " * 60,
        f"한국어 코멘트는 {LONG_URL}에서 보세요. {HANGUL_RUN} 그리고 " + "가나다 " * 40,
        "English",
        ("추론",),
    )
    digest = dataclasses.replace(sample_digest(), entries=(entry,))
    text, html = mail(tmp_path, Edition.KO, digest, abstract_chars=-1)
    lines = text.replace("\r\n", "\n").split("\n")
    for line in lines:
        if columns(line) > 76:  # only a URL (or a list entry) or a word that cannot break
            assert re.fullmatch(r"(\[\d+\] )?https?://\S+", line) or " " not in line, line
    # Every URL of the message is in the list, whole, with one number.
    links = numbered_links(text)
    hrefs = set(re.findall(r'href="([^"]+)"', html))
    assert hrefs == set(links.values())
    assert len(links) == len(set(links.values()))
    assert LONG_URL in links.values()
    # Hangul intact: the long run is on a line of its own, whole; words never split.
    assert HANGUL_RUN in lines
    assert entry.comment_ko.strip() in flat(text)

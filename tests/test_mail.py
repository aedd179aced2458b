"""Edition emails: MIME structure, headers, personalisation, golden files.

Golden files: tests/golden/email/<edition>.{headers,txt,html} hold the decoded
subject/headers, text/plain and text/html of the 2025-04-04 sample with Date and
Message-ID fixed. After an intended change to the templates or mail.py, run
    NEWSLETTER_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_mail.py
and review the diff of tests/golden/email/ before committing it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import re
from pathlib import Path

import pytest
from helpers import assert_golden, with_sample_links
from smtp_servers import mail_config, sample_digest

from newsletter.headers import check_address
from newsletter.mail import build_edition_email
from newsletter.model import Edition, Entry
from newsletter.text import columns
from newsletter.tokens import DEV_SECRET, sign_token, verify_token

GOLDEN = Path(__file__).parent / "golden" / "email"
NOW = dt.datetime(2025, 4, 4, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Reply-To",
    "Content-Language",
)


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def personalised(
    config, digest, edition, address="reader@example.com", name="Reader", eightbit=True
):
    message = build_edition_email(config, digest, edition, now=NOW)
    token = sign_token(DEV_SECRET, "unsubscribe", address)
    return message, token, message.personalise(address, name, token, eightbit=eightbit)


def bodies(msg):
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    return parts[0].get_content(), parts[1].get_content()


@pytest.mark.parametrize("edition", list(Edition))
def test_golden(tmp_path, edition):
    config = mail_config(tmp_path, reply_to="Editor <editor@example.org>")
    _, _, data = personalised(config, with_sample_links(sample_digest()), edition)
    msg = parse(data)
    headers = "".join(f"{name}: {msg[name]}\n" for name in HEADERS)
    text, html = bodies(msg)
    files = {"headers": headers, "txt": text, "html": html}
    files = {key: value.replace("\r\n", "\n") for key, value in files.items()}
    for suffix, actual in files.items():
        path = GOLDEN / f"{edition.value}.{suffix}"
        assert_golden(path, actual)


@pytest.mark.parametrize("eightbit", [True, False], ids=["8bitmime", "7bit"])
@pytest.mark.parametrize("edition", list(Edition))
def test_structure_and_decoding(tmp_path, edition, eightbit):
    config = mail_config(tmp_path)
    digest = sample_digest()
    _message, token, data = personalised(config, digest, edition, name="김철수", eightbit=eightbit)
    msg = parse(data)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["To"] == "김철수 <reader@example.com>"
    assert msg["Message-ID"].endswith("@example.org>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = re.findall(r"<([^>]+)>", msg["List-Unsubscribe"])
    assert https == f"https://papers.example.org/unsubscribe?token={token}"
    # The mailto carries the same signed token: a request for someone else's
    # address cannot be forged (newsletter bounces process acts on it).
    assert mailto == f"mailto:papers@example.org?subject=unsubscribe%20{token}"
    text, html = bodies(msg)
    for body in (text, html):
        assert f"unsubscribe?token={token}" in body
        assert f"preferences?token={token}" in body
        assert "NLSLOT" not in body
        assert f"https://papers.example.org/{edition.value}/2025-04-04/" in body
    for part in msg.iter_parts():
        assert part.get_content_charset() == "utf-8"
    encodings = [part["Content-Transfer-Encoding"] for part in msg.iter_parts()]
    body = data.split(b"\r\n\r\n", 1)[1]
    if eightbit:
        # RFC 6152: the relay takes 8bit; every line stays under 998 octets.
        assert encodings == ["8bit", "8bit"] and msg["Content-Transfer-Encoding"] == "8bit"
        if edition is not Edition.EN:  # Hangul travels as UTF-8 bytes, 3 per syllable
            assert digest.entries[0].comment_ko.encode() in data
    else:
        # 7-bit only: quoted-printable or base64, lines of at most 76 characters.
        assert set(encodings) <= {"quoted-printable", "base64"}
        assert data.isascii() and msg["Content-Transfer-Encoding"] is None
        assert max(len(line) for line in body.split(b"\r\n")) <= 76
    for line in data.split(b"\r\n"):
        assert len(line) < 998
    assert b"\n" not in data.replace(b"\r\n", b"")
    # Edition content, Korean typography, lang attributes.
    first = digest.entries[0]
    flat = " ".join(text.split())  # the text part is wrapped at 76 columns
    assert first.title in flat and first.title in html
    if edition in (Edition.KO, Edition.BOTH):
        assert first.comment_ko in flat and 'lang="ko"' in html
    else:
        assert first.comment_ko not in flat
    if edition in (Edition.EN, Edition.BOTH):
        assert first.comment_en in flat
    else:
        assert first.comment_en not in flat
    assert f'<html lang="{edition.language}"' in html
    assert "word-break:keep-all" in html.replace(" ", "")
    assert "Apple SD Gothic Neo" in html and "Malgun Gothic" in html and "Noto Sans KR" in html
    for line in text.splitlines():  # wrapped at 76 columns; only URLs stay whole
        assert columns(line) <= 76 or re.fullmatch(r"(\[\d+\] )?https?://\S+", line), line
    assert "prefers-color-scheme: dark" in html and "max-width: 480px" in html
    assert 'class="preheader"' in html and first.title in html.split('class="preheader"')[1][:400]


def test_hangul_subject_round_trips(tmp_path):
    config = mail_config(tmp_path)
    _, _, data = personalised(config, sample_digest(), Edition.KO)
    assert parse(data)["Subject"] == "[ML Papers] 2025년 4월 4일 · 논문 4편"
    header = data.split(b"\r\n\r\n")[0]
    assert header.isascii()
    assert b"=?utf-8?b?" in header


def test_both_marks_each_comment_language(tmp_path):
    _, _, data = personalised(mail_config(tmp_path), sample_digest(), Edition.BOTH)
    text, html = bodies(parse(data))
    assert "[한국어]" in text and "[English]" in text
    assert '<div class="comment" lang="ko"' in html and '<div class="comment" lang="en"' in html


def test_header_injection_is_impossible(tmp_path):
    config = mail_config(tmp_path, subject={"ko": "[ML]\r\nBcc: evil@example.net {date}"})
    digest = sample_digest()
    evil = dataclasses.replace(digest.entries[0], title="Evil\r\nBcc: evil@example.net\r\n\r\nx")
    digest = dataclasses.replace(digest, entries=(evil, *digest.entries[1:]))
    _, _, data = personalised(
        config, digest, Edition.KO, name="Kim\r\nBcc: evil@example.net\nX-Evil: 1"
    )
    msg = parse(data)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert "\n" not in msg["To"] and "\n" not in msg["Subject"]
    assert msg.defects == []
    with pytest.raises(ValueError):
        build_edition_email(config, digest, Edition.KO, now=NOW).personalise(
            "a@example.com\r\nBcc: evil@example.net", "", "tok"
        )
    for bad in ("a@b.c>", "a b@c.d", "a@b\nc", "<a@b.c>", "a@b.c,d@e.f", "nobody"):
        with pytest.raises(ValueError):
            check_address(bad)
    with pytest.raises(ValueError):
        build_edition_email(config, digest, Edition.KO, now=NOW).personalise(
            "a@example.com", "", "tok\r\nX: y"
        )


def test_international_addresses(tmp_path):
    config = mail_config(tmp_path)
    assert check_address("kim@한국.kr").envelope == "kim@xn--3e0b707e.kr"
    utf8 = check_address("김@example.kr")
    assert utf8.smtputf8
    message = build_edition_email(config, sample_digest(), Edition.KO, now=NOW)
    token = sign_token(b"k", "unsubscribe", "김@example.kr")
    data = message.personalise("김@example.kr", "김", token)
    # RFC 6532 (SMTPUTF8): the address travels as UTF-8; the name stays RFC 2047.
    to = next(line for line in data.split(b"\r\n") if line.startswith(b"To: "))
    assert to == b"To: =?utf-8?b?6rmA?= <" + "김@example.kr".encode() + b">"

    # An IDNA domain needs no SMTPUTF8: the header carries the A-label (RFC 5890),
    # the headers stay ASCII (the whole message in the 7-bit form), and the link
    # carries the token it was given.
    idna_token = sign_token(b"k", "unsubscribe", "kim@한국.kr")
    eight = message.personalise("kim@한국.kr", "김", idna_token)
    assert eight.partition(b"\r\n\r\n")[0].isascii()
    data = message.personalise("kim@한국.kr", "김", idna_token, eightbit=False)
    assert data.isascii()
    to = next(line for line in data.split(b"\r\n") if line.startswith(b"To: "))
    assert to == b"To: =?utf-8?b?6rmA?= <kim@xn--3e0b707e.kr>"
    msg = parse(data)
    assert msg["To"].addresses[0].addr_spec == "kim@xn--3e0b707e.kr"
    assert msg["To"].addresses[0].display_name == "김"
    assert f"unsubscribe?token={idna_token}>" in msg["List-Unsubscribe"]
    assert verify_token(b"k", "unsubscribe", idna_token) == "kim@한국.kr"
    text, html = bodies(msg)
    assert f"unsubscribe?token={idna_token}" in text and idna_token in html


def test_long_address_token_is_folded_and_survives(tmp_path):
    config = mail_config(tmp_path)
    address = "x" * 60 + "." + "y" * 3 + "@" + "sub." * 20 + "example.com"
    _message, token, data = personalised(config, sample_digest(), Edition.EN, address=address)
    assert len(token) > 150
    text, html = bodies(parse(data))
    assert f"unsubscribe?token={token}\r\n" in text
    assert f'href="https://papers.example.org/unsubscribe?token={token}"' in html
    assert verify_token(DEV_SECRET, "unsubscribe", token) == address


def test_the_unsubscribe_links_go_where_the_config_says(tmp_path):
    from newsletter.mail import unsubscribe_mailto, unsubscribe_url

    token = "t0k.3n"
    subject = "?subject=unsubscribe%20t0k.3n"
    assert unsubscribe_url(mail_config(tmp_path), token) == (
        "https://papers.example.org/unsubscribe?token=t0k.3n"
    )
    # email.unsubscribe_mailto, else the bounce mailbox, else the sender.
    assert unsubscribe_mailto(mail_config(tmp_path), token) == f"mailto:papers@example.org{subject}"
    bounces = mail_config(tmp_path, bounce_address="bounces@example.org")
    assert unsubscribe_mailto(bounces, token) == f"mailto:bounces@example.org{subject}"
    # Given as a mailto: URL with its own subject: the address alone is kept.
    both = mail_config(
        tmp_path,
        bounce_address="bounces@example.org",
        unsubscribe_mailto="mailto:leave@example.org?subject=x",
    )
    assert unsubscribe_mailto(both, token) == f"mailto:leave@example.org{subject}"
    plain = mail_config(tmp_path, unsubscribe_mailto="leave@example.org")
    assert unsubscribe_mailto(plain, token) == f"mailto:leave@example.org{subject}"


def test_only_the_outbox_falls_back_to_the_dev_key(tmp_path, monkeypatch):
    import logging

    from newsletter.errors import NewsletterError
    from newsletter.mail import resolve_secret
    from newsletter.tokens import UNSUBSCRIBE

    config = mail_config(tmp_path)
    monkeypatch.delenv("NEWSLETTER_SECRET", raising=False)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("newsletter").addHandler(handler)
    try:
        secret = resolve_secret(config, smtp=False)
    finally:
        logging.getLogger("newsletter").removeHandler(handler)
    # The outbox's links are signed with the development key, and the log says so.
    token = sign_token(secret, UNSUBSCRIBE, "kim@example.org")
    assert verify_token(DEV_SECRET, UNSUBSCRIBE, token) == "kim@example.org"
    assert [r.getMessage()[:32] for r in records] == ["$NEWSLETTER_SECRET is not set: u"]
    # Real mail never is.
    with pytest.raises(NewsletterError, match=r"NEWSLETTER_SECRET is not set"):
        resolve_secret(config, smtp=True)
    monkeypatch.setenv("NEWSLETTER_SECRET", "s3cret-of-16-bytes")
    expected = b"s3cret-of-16-bytes"
    assert resolve_secret(config, smtp=True) == resolve_secret(config, smtp=False) == expected


def test_tokens():
    token = sign_token(b"secret", "unsubscribe", "Kim@example.org")
    assert re.fullmatch(r"[A-Za-z0-9_.\-]+", token)
    assert verify_token(b"secret", "unsubscribe", token) == "Kim@example.org"
    assert verify_token(b"other", "unsubscribe", token) is None
    assert verify_token(b"secret", "confirm", token) is None
    assert verify_token(b"secret", "unsubscribe", token[:-2] + "AA") is None
    assert verify_token(b"secret", "unsubscribe", "garbage") is None


def test_message_id_is_deterministic(tmp_path):
    config = mail_config(tmp_path)
    digest = sample_digest()
    one = parse(personalised(config, digest, Edition.KO)[2])["Message-ID"]
    two = parse(personalised(config, digest, Edition.KO)[2])["Message-ID"]
    other = parse(personalised(config, digest, Edition.EN)[2])["Message-ID"]
    assert one == two != other
    assert re.fullmatch(r"<20250404\.ko\.[0-9a-f]{20}@example\.org>", one)


def test_text_is_escaped_in_html_and_plain_in_text(tmp_path):
    digest = sample_digest()
    entry = Entry(
        title="<script>alert(1)</script> Q&A {{ x }}",
        authors=("A <b>",),
        abstract="See https://example.com/a?b=1&c=2.",
        comment_ko="한국어 <think> 설명",
        comment_en="English",
        tags=("추론",),
    )
    digest = dataclasses.replace(digest, entries=(entry,))
    _, _, data = personalised(mail_config(tmp_path), digest, Edition.KO)
    text, html = bodies(parse(data))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "&lt;think&gt;" in html
    assert '<a href="https://example.com/a?b=1&amp;c=2"' in html
    flat = " ".join(text.split())
    assert "<script>alert(1)</script> Q&A {{ x }}" in flat
    assert "한국어 <think> 설명" in flat and "#추론" in flat


@pytest.mark.parametrize(
    ("korean_heavy", "eightbit"), [(False, True), (False, False), (True, False)]
)
def test_personalise_2000_recipients_changes_only_their_own_values(
    tmp_path, korean_heavy, eightbit
):
    import time

    from big_digest import big_digest

    digest = big_digest(3) if korean_heavy else sample_digest()
    message = build_edition_email(mail_config(tmp_path), digest, Edition.KO, now=NOW)
    expected = {
        (False, True): ("8bit", "8bit"),
        (False, False): ("quoted-printable", "quoted-printable"),
        (True, False): ("base64", "base64"),  # every splicer is measured
    }[korean_heavy, eightbit]
    wire = message.eightbit if eightbit else message.sevenbit
    assert wire.encodings == expected
    token = sign_token(b"k", "unsubscribe", "a@example.com")
    start = time.perf_counter()
    data = [
        message.personalise(f"user{i}@example.com", "Name", token, eightbit=eightbit)
        for i in range(2000)
    ]
    per_message = (time.perf_counter() - start) / 2000
    # Speed is measured (bench/send.py), never asserted: a loaded machine is slow.
    print(f"personalise ({wire.encodings[0]}): {per_message * 1e6:.1f} us per message")
    assert len(set(data)) == 2000
    # The address appears once (To); every other byte is the same length.
    assert {len(d) - len(str(i)) for i, d in enumerate(data)} == {len(data[0]) - 1}
    assert all(b"To: Name <user%d@example.com>" % i in d for i, d in enumerate(data[:50]))


def test_two_builds_of_the_same_issue_are_byte_identical(tmp_path):
    config = mail_config(tmp_path)
    first = personalised(config, sample_digest(), Edition.BOTH)[2]
    second = personalised(config, sample_digest(), Edition.BOTH)[2]
    assert first == second


def test_list_id_keeps_its_id_literal_with_a_korean_title(tmp_path):
    config = mail_config(tmp_path)
    config = config.model_copy(
        update={"site": config.site.model_copy(update={"title": "ML 논문 ‹모음> <x>"})}
    )
    data = personalised(config, sample_digest(), Edition.KO)[2]
    raw = next(line for line in data.split(b"\r\n") if line.startswith(b"List-Id:"))
    assert raw.endswith(b" <ko.example.org>") and raw.count(b"<") == 1
    assert parse(data)["List-Id"] == "ML 논문 ‹모음 x <ko.example.org>"


def test_a_very_long_name_keeps_header_lines_short(tmp_path):
    config = mail_config(tmp_path)
    data = personalised(config, sample_digest(), Edition.KO, name="가" * 400)[2]
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert parse(data)["To"].addresses[0].display_name == "가" * 100

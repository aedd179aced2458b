"""The email size guarantee: the HTML part as transmitted never passes
email.max_bytes, content is given up cheapest first, and nothing is lost.

The workload is a generated 60-paper, Korean-heavy digest (tests/big_digest.py);
every message is personalised for the longest address there is (254 octets),
whose unsubscribe token is the longest one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import logging
import re

import pytest
from big_digest import big_digest, with_links
from helpers import LONGEST_ADDRESS, autolinks, html_text, numbered_links, raw_parts, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtp_servers import mail_config

from newsletter.errors import NewsletterError
from newsletter.mail import MAX_TOKEN, build_edition_email
from newsletter.mail_layout import Cut
from newsletter.mail_size import fit, ladder
from newsletter.model import Digest, Edition, Entry
from newsletter.render import paper_anchors
from newsletter.tokens import DEV_SECRET, UNSUBSCRIBE, sign_token

NOW = dt.datetime(2025, 6, 2, 7, 0, tzinfo=dt.UTC)
FORMS = [True, False]
FORM_IDS = ["8bitmime", "7bit"]


@pytest.fixture(scope="module", params=["plain", "linked"])
def sixty(request) -> Digest:
    """Sixty papers, without links and with (papers.links: more bytes per paper)."""
    digest = big_digest(60)
    return with_links(digest) if request.param == "linked" else digest


def title_html(number: int, title: str) -> re.Pattern[str]:
    """A paper's numbered title in the HTML part, linked or not."""
    return re.compile(rf">{number}\. (?:<a [^>]*>)?{re.escape(title)}(?:</a>\s*)?</h2>")


def send(message, eightbit: bool) -> bytes:
    token = sign_token(DEV_SECRET, UNSUBSCRIBE, LONGEST_ADDRESS)
    assert len(token) == MAX_TOKEN  # the guard measures with this one
    return message.personalise(LONGEST_ADDRESS, "가" * 100, token, eightbit=eightbit)


def html_part_bytes(data: bytes) -> int:
    (_text_headers, _text), (headers, body) = raw_parts(data)
    assert b"text/html" in headers
    return len(body)


def bodies(data: bytes) -> tuple[str, str]:
    message = email.message_from_bytes(data, policy=email.policy.default)
    text, html = (part.get_content() for part in message.iter_parts())
    return text, html


@pytest.mark.parametrize("eightbit", FORMS, ids=FORM_IDS)
@pytest.mark.parametrize("edition", list(Edition))
def test_every_edition_of_sixty_papers_fits_and_nothing_is_lost(
    tmp_path, sixty, edition, eightbit, caplog
):
    config = mail_config(tmp_path, postal_address="1 Example-ro, Seoul")
    with caplog.at_level(logging.WARNING, logger="newsletter"):
        message = build_edition_email(config, sixty, edition, now=NOW)
    data = send(message, eightbit)
    assert html_part_bytes(data) <= 100_000
    wire = message.eightbit if eightbit else message.sevenbit
    assert html_part_bytes(data) == wire.html_bytes  # measured as sent
    text, html = bodies(data)
    flat = " ".join(text.split())
    shown = wire.cut.papers
    assert shown is not None and 1 <= shown < 60  # far too much for one email
    page = f"https://papers.example.org/{edition.value}/2025-06-02/"
    anchors = paper_anchors([entry.title for entry in sixty.entries])
    for index, entry in enumerate(sixty.entries):
        # Every paper is in the email (HTML and text alike) or behind the link.
        in_email = index < shown
        assert bool(title_html(index + 1, entry.title).search(html)) is in_email
        assert (f"{index + 1}. {entry.title}" in flat) is in_email
        # So is its link line, and the link list of the text part.
        link = sixty.link(index)
        if link is not None:
            assert (f'href="{link.pdf_url}"' in html) is in_email
            assert (f"{link.name} ({link.category}) [" in flat) is in_email
            assert (link.hf_url in numbered_links(text).values()) is in_email
    rest = 60 - shown
    more = f"{page}#{anchors[shown]}"  # the first paper not in the email
    assert more in autolinks(html) or f'href="{more}"' in html
    label = {"ko": f"나머지 논문 {rest}편은 웹에서 보세요", "en": f"{rest} more papers on the web"}
    for lang in ("ko", "en") if edition is Edition.BOTH else (edition.language,):
        assert label[lang] in html_text(html) and label[lang] in flat
    # The footer is always there, whole.
    token = sign_token(DEV_SECRET, UNSUBSCRIBE, LONGEST_ADDRESS)
    for body in (html, text):
        assert f"unsubscribe?token={token}" in body and f"preferences?token={token}" in body
        assert "https://papers.example.org/subscribe" in body
        assert "1 Example-ro, Seoul" in body
    # The degradation was said, naming the date and the edition.
    assert f"2025-06-02 {edition.value} edition" in caplog.text
    assert "only the first" in caplog.text


def test_the_text_part_follows_the_html_decisions(tmp_path, sixty):
    config = mail_config(tmp_path, max_bytes=40_000)
    message = build_edition_email(config, sixty, Edition.KO, now=NOW)
    text, html = bodies(send(message, True))
    flat_html, flat = " ".join(html.split()), " ".join(text.split())  # lines are folded
    assert flat.count("(전문 보기 [") == flat_html.count(">전문 보기</a>") > 0
    assert len(text.encode()) < len(html.encode())
    titles_html = re.findall(r"<h2[^>]*>(\d+)\. ", html)
    titles_text = re.findall(r"^(\d+)\. ", text, re.M)
    assert titles_html == titles_text


@pytest.mark.parametrize("eightbit", FORMS, ids=FORM_IDS)
def test_losses_come_cheapest_first(tmp_path, eightbit):
    """With the limit just under each step's size, the guard takes the next
    step that fits: shorter abstracts, hidden abstracts, shorter comments,
    then fewer papers; never a costlier loss while a cheaper one fits."""
    from newsletter.mail import _Builder

    digest = big_digest(6, seed=3)
    levels = ladder(500)
    from newsletter.letters import Letter

    letter = Letter.daily(digest)
    sizer = _Builder(mail_config(tmp_path), letter, Edition.BOTH, now=NOW, test=False)
    sizes = [sizer.html_bytes(cut, eightbit) for cut in levels]
    assert sizes == sorted(sizes, reverse=True)  # each step gives something up
    seen = []
    for index, size in enumerate(sizes):
        limit = size - 1  # this step no longer fits
        config = mail_config(tmp_path / str(index), max_bytes=max(limit, 10_000))
        if limit < 10_000:
            break
        message = build_edition_email(config, digest, Edition.BOTH, now=NOW)
        wire = message.eightbit if eightbit else message.sevenbit
        fitting = [cut for cut, s in zip(levels, sizes, strict=True) if s <= limit]
        if fitting:
            assert wire.cut == fitting[0], (limit, wire.cut)
        else:  # no step fits all six papers: the first N in full
            assert wire.cut.papers is not None and wire.cut.abstract == 500
        assert wire.html_bytes <= limit
        seen.append(wire.cut)
    kinds = [
        "papers"
        if cut.papers
        else "comments"
        if cut.comment
        else "abstracts hidden"
        if cut.abstract == 0
        else "abstracts"
        for cut in seen
    ]
    assert list(dict.fromkeys(kinds)) == ["abstracts", "abstracts hidden", "comments", "papers"]


def test_fit_bisects_and_takes_the_first_step_that_fits():
    """`fit` with a made-up size: about log2 of the steps, never a step past the first fit."""
    levels = ladder(-1)
    sizes = {cut: 100_000 - 9_000 * index for index, cut in enumerate(levels)}
    asked = []

    def measure(cut: Cut) -> int:
        asked.append(cut)
        if cut.papers is not None:
            return 2_000 + 3_000 * cut.papers
        return sizes[cut]

    for limit in (100_000, 70_000, 40_001, 19_000, 18_000):
        asked.clear()
        cut = fit(measure, papers=60, abstract_chars=-1, limit=limit)
        if limit >= sizes[levels[-1]]:
            assert cut == next(c for c in levels if sizes[c] <= limit)
        else:  # the first 5 papers in full: 2,000 + 3,000 * 5 <= 18,000
            assert cut == dataclasses.replace(levels[0], papers=5)
        assert len(asked) <= 10
    # A guess of the number of papers, right or wrong, gives the same answer;
    # a right one costs two measurements.
    for guessed in (1, 4, 5, 6, 30, 59, 80):
        asked.clear()
        cut = fit(
            measure, papers=60, abstract_chars=-1, limit=18_000, guess=lambda c, lim, g=guessed: g
        )
        assert cut == dataclasses.replace(levels[0], papers=5), guessed
        papers_asked = [c for c in asked if c.papers is not None]
        assert len(papers_asked) <= (2 if guessed == 5 else 8), (guessed, papers_asked)


def test_a_paper_that_cannot_fit_is_an_error_naming_date_and_edition(tmp_path):
    huge = Entry("T " * 30_000, ("A",), "abstract", "코멘트", "comment", ("tag",))
    digest = Digest(dt.date(2025, 6, 3), (huge,), "huge.txt")
    config = mail_config(tmp_path, max_bytes=20_000)
    with pytest.raises(NewsletterError) as caught:
        build_edition_email(config, digest, Edition.KO, now=NOW)
    assert "2025-06-03 ko edition" in caught.value.message
    assert "not even one paper fits" in caught.value.message
    assert "email.max_bytes" in caught.value.hint


def test_publish_refuses_to_send_an_edition_that_cannot_fit(tmp_path):
    """Through the real CLI: exit 1, one message naming date and edition, and
    nothing sent or recorded."""
    from newsletter.digest import format_digest

    folder = tmp_path / "digests"
    folder.mkdir()
    huge = Entry("긴 제목 " * 4_000, ("A",), "abstract", "코멘트", "comment", ("tag",))
    (folder / "2025-06-03.txt").write_text(
        format_digest(Digest(dt.date(2025, 6, 3), (huge,), "x")), encoding="utf-8"
    )
    (tmp_path / "config.yaml").write_text(
        "paths:\n  digests: digests\n  public: public\n  state: state\n  outbox: outbox\n"
        "papers:\n  lookup: off\n"
        "email:\n  max_bytes: 10000\n",
        encoding="utf-8",
    )
    added = run_cli("subscribers", "add", "a@example.org", "--edition", "ko", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    result = run_cli("publish", "--date", "2025-06-03", "--force", cwd=tmp_path)
    assert result.returncode == 1
    assert "2025-06-03 ko edition: not even one paper fits" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "outbox").rglob("*.eml"))
    status = run_cli("status", "--json", cwd=tmp_path)
    assert '"sent": 1' not in status.stdout


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limit=st.integers(min_value=10_000, max_value=60_000), seed=st.integers(0, 50))
def test_never_over_the_limit(tmp_path_factory, limit, seed):
    config = mail_config(tmp_path_factory.mktemp("c"), max_bytes=limit)
    digest = big_digest(8, seed=seed)
    if seed % 2:  # with paper links: more bytes per paper
        digest = with_links(digest)
    for edition in Edition:
        try:
            message = build_edition_email(config, digest, edition, now=NOW)
        except NewsletterError as error:
            assert "not even one paper fits" in error.message
            continue
        for eightbit in FORMS:
            assert html_part_bytes(send(message, eightbit)) <= limit


def test_an_edition_that_fits_is_whole_and_silent(tmp_path, caplog):
    digest = big_digest(3)
    with caplog.at_level(logging.WARNING, logger="newsletter"):
        message = build_edition_email(mail_config(tmp_path), digest, Edition.BOTH, now=NOW)
    assert not message.shortened and not caplog.records
    assert message.eightbit.cut == Cut(abstract=500)

"""Text in RSS is HTML; text in Atom is text: every text field of every feed reaches
a feed reader (feedparser) as exactly the digest's text, and the W3C Feed
Validation Service's own code finds no error and no "Invalid HTML"."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import feedparser
import pytest
from helpers import SAMPLE_DIGESTS, html_text

from newsletter.config import config_from_dict
from newsletter.digest import format_digest, parse_digest, read_digest
from newsletter.feeds import feed_files
from newsletter.model import Digest, Entry
from newsletter.render import EDITION_NAMES, format_date, paper_count
from newsletter.site import write_site

# The issue's title, and text of our own that feed readers tend to mangle.
ISSUE_TITLE = "Why <b>bold</b> & <think> tags matter"
HOSTILE = [
    ISSUE_TITLE,
    "AT&T &amp; Q&A: a < b > c, &lt;already escaped&gt; &#x3C;ref&#62; &nbsp;",
    "<![CDATA[x]]> ]]> <script>alert(1)</script> <!-- c --> {{ 7*7 }} {% raw %}",
    '"Quotes" \'single\' <i>italic</i> <a href="https://evil.example/">x</a>',
    "한국어 <태그> & 기호 <br/> 줄바꿈 <p>문단</p>",
]
SITE_TITLE = "ML <b>Papers</b> & Q&A"
DESCRIPTION = "Notes on <think> & <em>more</em>, 한국어 <설명>"
AUTHOR = "R&D <Lab> “Kim” <b>"


def hostile_config(public: Path):
    return config_from_dict(
        {
            "site": {
                "title": SITE_TITLE,
                "description": DESCRIPTION,
                "author": AUTHOR,
                "base_url": "https://example.org/papers/",
            },
            "paths": {"public": str(public)},
        },
        base=public.parent,
    )


def hostile_digests() -> list[Digest]:
    """Two issues whose every text field is one of HOSTILE, written and read back."""
    digests = []
    for day, titles in ((1, HOSTILE[:3]), (2, HOSTILE[2:])):
        entries = tuple(
            Entry(
                title=title,
                authors=(f"A<b>{n}</b>", "Bob & Co"),
                abstract=f"Abstract: {HOSTILE[(n + 1) % len(HOSTILE)]}",
                comment_ko=f"코멘트: {HOSTILE[(n + 2) % len(HOSTILE)]}",
                comment_en=f"Comment: {HOSTILE[(n + 3) % len(HOSTILE)]}",
                tags=("html", f"t{n}", "추론"),
            )
            for n, title in enumerate(titles)
        )
        text = format_digest(Digest(dt.date(2025, 6, day), entries, "hostile.txt"))
        digests.append(parse_digest(text, f"hostile-{day}.txt").digest)
    return digests


def reader_text(detail) -> str:
    """What a reader shows of a feedparser text field (HTML rendered to text)."""
    if detail.type in ("text/html", "application/xhtml+xml"):
        return html_text(detail.value)
    return detail.value


def parse(data: bytes):
    parsed = feedparser.parse(data)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


def papers_of(digests, edition):
    from newsletter.render import paper_views

    return {(d.date, p.anchor): (d, p) for d in digests for p in paper_views(d, edition)}


@pytest.mark.parametrize("edition", ["ko", "en", "both"])
@pytest.mark.parametrize("kind", ["atom", "rss"])
def test_edition_feed_fields_read_as_written(tmp_path, edition, kind):
    config = hostile_config(tmp_path / "public")
    digests = hostile_digests()
    parsed = parse(feed_files(config, digests)[f"feeds/{edition}/{kind}.xml"])
    name = EDITION_NAMES[edition][0]
    assert reader_text(parsed.feed.title_detail) == f"{SITE_TITLE} · {name}"
    assert reader_text(parsed.feed.subtitle_detail) == DESCRIPTION
    if kind == "atom":
        assert parsed.feed.author_detail.name == AUTHOR
    language = "en" if edition == "en" else "ko"
    for digest, entry in zip(reversed(digests), parsed.entries, strict=True):
        count = paper_count(len(digest.entries), language)
        assert reader_text(entry.title_detail) == f"{format_date(digest.date, language)} · {count}"
        titles = [e.title for e in digest.entries]
        assert reader_text(entry.summary_detail) == " · ".join(titles)
        content = html_text(entry.content[0].value)
        for paper in digest.entries:
            for field in (paper.title, ", ".join(paper.authors), paper.abstract):
                assert field in content
        assert [tag.term for tag in entry.tags] == list(digest.tags)
        if kind == "rss":
            assert entry.author == AUTHOR  # dc:creator
        else:
            assert entry.get("author", AUTHOR) == AUTHOR  # the feed's author applies


@pytest.mark.parametrize("edition", ["ko", "en", "both"])
def test_tag_feed_fields_read_as_written(tmp_path, edition):
    config = hostile_config(tmp_path / "public")
    digests = hostile_digests()
    files = feed_files(config, digests)
    parsed = parse(files[f"feeds/{edition}/tags/html/atom.xml"])
    assert reader_text(parsed.feed.title_detail) == (
        f"#html · {SITE_TITLE} · {EDITION_NAMES[edition][0]}"
    )
    papers = papers_of(digests, edition)
    assert len(parsed.entries) == len(papers) == 6
    for entry in parsed.entries:
        date = dt.date.fromisoformat(entry.link.split("/")[-2])
        _digest, paper = papers[date, entry.link.split("#")[1]]
        assert reader_text(entry.title_detail) == paper.title
        comments = " ".join(comment.text for comment in paper.comments)
        assert reader_text(entry.summary_detail) == comments
        content = html_text(entry.content[0].value)
        assert paper.title in content and paper.abstract in content and paper.authors in content
        for comment in paper.comments:
            assert comment.text in content
        assert [tag.term for tag in entry.tags] == [tag.name for tag in paper.tags]


def test_the_issue_title_in_rss_description(tmp_path):
    """The given case: RSS <description> was escaped once, so readers saw HTML."""
    config = hostile_config(tmp_path / "public")
    entry = Entry(ISSUE_TITLE, ("A",), "Abstract.", "코멘트.", "Comment.", ("x",))
    digest = Digest(dt.date(2025, 6, 4), (entry,), "one.txt")
    for kind in ("atom", "rss"):
        item = parse(feed_files(config, [digest])[f"feeds/en/{kind}.xml"]).entries[0]
        assert reader_text(item.summary_detail) == ISSUE_TITLE
        assert "<think>" not in item.content[0].value


def test_plain_text_stays_plain(tmp_path):
    """Text without '<' or '&' is written as is: Atom type="text", RSS unescaped."""
    config = config_from_dict({"paths": {"public": str(tmp_path)}}, base=tmp_path)
    digest = read_digest(SAMPLE_DIGESTS / "2025-04-04.txt").digest
    files = feed_files(config, [digest])
    atom = files["feeds/en/tags/math/atom.xml"].decode()
    assert "<title>MegaMath: Pushing the Limits of Open Math Corpora</title>" in atom
    assert 'type="html">MegaMath' not in atom
    rss = files["feeds/en/rss.xml"].decode()
    assert "<description>MegaMath: Pushing the Limits of Open Math Corpora · " in rss


# --- the W3C Feed Validation Service's own code -------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def shared_tool(name: str) -> Path | None:
    """../shared/tools/NAME beside the repository (the main checkout, for a git
    worktree too), or None: a fresh clone elsewhere (CI) has no ../shared."""
    roots = [ROOT]
    try:
        common = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if common.returncode == 0:
            roots.append(Path(common.stdout.strip()).parent)
    except OSError:  # no git: the project root alone
        pass
    for root in roots:
        path = root.parent / "shared" / "tools" / name
        if path.is_file():
            return path
    return None


FEEDCHECK = shared_tool("feedcheck.py")


def assert_feedcheck_clean(path: Path, url: str) -> None:
    """feedcheck.py PATH --base URL (the W3C validator's code): no error, no warning."""
    assert FEEDCHECK is not None
    result = subprocess.run(
        [sys.executable, str(FEEDCHECK), str(path), "--base", url],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Invalid HTML" not in result.stdout
    assert result.stdout.startswith(f"{path}: 0 errors, 0 warnings"), result.stdout


def feed_paths(public: Path, edition: str) -> list[Path]:
    return sorted((public / "feeds" / edition).rglob("*.xml"))


@pytest.fixture(scope="module")
def validated_public(tmp_path_factory) -> Path:
    """The example digests and the hostile ones, built as a site."""
    public = tmp_path_factory.mktemp("validated") / "public"
    examples = [read_digest(path).digest for path in sorted((ROOT / "examples/digests").iterdir())]
    write_site(hostile_config(public), [*examples, *hostile_digests()])
    return public


@pytest.mark.skipif(FEEDCHECK is None, reason="../shared/tools/feedcheck.py is absent")
@pytest.mark.parametrize("edition", ["ko", "en", "both"])
def test_w3c_validator_finds_nothing(validated_public, edition):
    """feedcheck.py FEED --base URL for every feed: no error, no warning at all."""
    paths = feed_paths(validated_public, edition)
    assert len(paths) > 20
    for path in paths:
        relative = path.relative_to(validated_public).as_posix()
        assert_feedcheck_clean(path, "https://example.org/papers/" + quote(relative))

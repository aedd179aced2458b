"""The archive site: golden pages, escaping, determinism, incremental and stale files.

Golden files live in tests/golden/site/. After an intended change to the pages,
regenerate them and review the diff:

    NEWSLETTER_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_site.py tests/test_feeds.py
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from helpers import assert_golden, with_sample_links

from newsletter import render
from newsletter.digest import format_digest, parse_digest
from newsletter.model import Digest, Edition, Entry
from newsletter.site import MANIFEST, index_files, issue_files, write_site

GOLDEN = Path(__file__).parent / "golden" / "site"
EDITIONS = ("ko", "en", "both")

HOSTILE_TITLE = '<script>alert(1)</script> {{ 7*7 }} Q&A "quotes"'
HOSTILE_URL = "https://example.org/x?a=1&b=2"


def check_golden(name: str, data: bytes) -> None:
    assert_golden(GOLDEN / name, data)


def hostile_digest() -> Digest:
    """A digest full of markup and template syntax, written and parsed back."""
    entry = Entry(
        title=HOSTILE_TITLE,
        authors=("Alice <b>Kim</b>", "Bob & Co"),
        abstract=f"Abstract with <think>tags</think>, {{{{ 7*7 }}}} and a link ({HOSTILE_URL}).",
        comment_ko=f"한국어 코멘트 <script>alert(1)</script> {{{{ 7*7 }}}} ({HOSTILE_URL})",
        comment_en=f'English "comment" Q&A {{% if true %}}x{{% endif %}} ({HOSTILE_URL}).',
        tags=("추론", "gpt-4.5", "Q-A"),
    )
    text = format_digest(Digest(dt.date(2025, 6, 1), (entry,), "hostile.txt"))
    return parse_digest(text, "hostile.txt").digest


def tree(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# --- golden pages -------------------------------------------------------------


@pytest.mark.parametrize("edition", EDITIONS)
def test_issue_page_matches_golden(site_config, site_digests, edition):
    files = issue_files(site_config, with_sample_links(site_digests[1]))
    check_golden(f"{edition}-2025-04-04.html", files[f"{edition}/2025-04-04/index.html"])


def test_issue_files_cover_configured_editions_only(site_config, site_digests):
    only_en = site_config.model_copy(update={"editions": (Edition.EN,)})
    assert set(issue_files(only_en, site_digests[0])) == {"en/2025-01-22/index.html"}


# --- page content ---------------------------------------------------------------


def test_labels_dates_and_lang_attributes(site_config, site_digests):
    files = issue_files(site_config, site_digests[1])
    ko = files["ko/2025-04-04/index.html"].decode()
    en = files["en/2025-04-04/index.html"].decode()
    both = files["both/2025-04-04/index.html"].decode()
    assert '<html lang="ko">' in ko and "2025년 4월 4일" in ko and "초록" in ko
    assert '<html lang="en">' in en and "April 4, 2025" in en and "Abstract" in en
    # English titles and abstracts are marked on Korean pages, not on English ones.
    assert '<h2 lang="en">' in ko and '<h2 lang="en">' not in en
    # ko: Korean comment only; en: English only; both: each, the English one marked.
    korean = "수학 및 코드 데이터 371B"
    english = "The corpus contains 371B tokens"
    assert korean in ko and english not in ko
    assert english in en and korean not in en
    assert korean in both and f'<p lang="en">{english}' in both
    assert '<p class="label" lang="en">English</p>' in both


def test_korean_comment_marked_on_english_page_when_it_stands_in(site_config):
    entry = Entry("Only Korean", ("A",), "Abstract.", "한국어만 있습니다.", "", ("x",))
    digest = Digest(dt.date(2025, 1, 1), (entry,), "k.txt")
    en = issue_files(site_config, digest)["en/2025-01-01/index.html"].decode()
    assert '<p lang="ko">한국어만 있습니다.</p>' in en


def test_feed_autodiscovery_on_every_page(site_config, site_digests):
    pages = {**issue_files(site_config, site_digests[0]), **index_files(site_config, site_digests)}
    atom = '<link rel="alternate" type="application/atom+xml"'
    for path, data in pages.items():
        html = data.decode()
        assert atom in html, path
        if path == "index.html":
            for edition in EDITIONS:
                assert f"https://example.org/papers/feeds/{edition}/atom.xml" in html
        else:
            edition = path.split("/")[0]
            assert f"https://example.org/papers/feeds/{edition}/atom.xml" in html, path


def test_pages_are_self_contained(site_config, site_digests):
    for data in issue_files(site_config, site_digests[2]).values():
        html = data.decode()
        assert "<script" not in html
        assert 'rel="stylesheet"' not in html and "@import" not in html
        assert "<style>" in html and "prefers-color-scheme: dark" in html
        assert "word-break: keep-all" in html and "Apple SD Gothic Neo" in html
        assert "overflow-wrap: anywhere" in html and "max-width: 42rem" in html


def test_paper_anchors_are_stable_and_linked(site_config, site_digests):
    html = issue_files(site_config, site_digests[1])["ko/2025-04-04/index.html"].decode()
    anchor = render.paper_anchor("MegaMath: Pushing the Limits of Open Math Corpora")
    assert anchor == "megamath-pushing-the-limits-of-open-math-corpora-4df9f0b0"
    assert f'id="{anchor}"' in html and f'href="#{anchor}"' in html
    ids = re.findall(r'<article class="paper" id="([^"]+)"', html)
    assert len(ids) == len(set(ids)) == 4


def test_repeated_titles_get_distinct_anchors():
    assert render.paper_anchors(["Same", "Same", "Other"]) == [
        render.paper_anchor("Same"),
        render.paper_anchor("Same") + "-2",
        render.paper_anchor("Other"),
    ]


def test_edition_index_newest_first_with_titles(site_config, site_digests):
    html = index_files(site_config, site_digests)["en/index.html"].decode()
    dates = re.findall(r'<h2><a href="(\d{4}-\d\d-\d\d)/">', html)
    assert dates == ["2025-05-19", "2025-04-04", "2025-01-22"]
    assert "MegaMath: Pushing the Limits of Open Math Corpora" in html
    assert 'href="2025-04-04/#megamath-pushing-the-limits-of-open-math-corpora-4df9f0b0"' in html


def test_tag_pages_list_papers_across_issues_newest_first(site_config, site_digests):
    files = index_files(site_config, site_digests)
    html = files["ko/tags/reasoning/index.html"].decode()
    dates = re.findall(r'<a href="../../(\d{4}-\d\d-\d\d)/">', html)
    assert dates == sorted(dates, reverse=True) and len(set(dates)) > 1
    assert "https://example.org/papers/feeds/ko/tags/reasoning/atom.xml" in html


def test_hangul_and_dotted_tags_get_safe_folders_and_quoted_links(site_config):
    digest = hostile_digest()
    files = index_files(site_config, [digest])
    assert "ko/tags/추론/index.html" in files
    assert "ko/tags/gpt-4.5/index.html" in files
    assert "ko/tags/q-a/index.html" in files  # case folded: one folder on any file system
    page = issue_files(site_config, digest)["en/2025-06-01/index.html"].decode()
    assert 'href="../tags/%EC%B6%94%EB%A1%A0/" lang="ko">#추론</a>' in page
    assert render.tag_slug("..") == "_.." and render.tag_slug(".net") == "_.net"
    assert render.tag_slug("a/b") == "a-b"


# --- escaping -------------------------------------------------------------------


def test_digest_text_is_escaped_never_evaluated(site_config):
    digest = hostile_digest()
    pages = {**issue_files(site_config, digest), **index_files(site_config, [digest])}
    for path, data in pages.items():
        html = data.decode()
        assert "<script>" not in html, path
        assert "<think>" not in html and "<b>Kim" not in html, path
        assert not re.search(r"(?<![\w.])49(?![\w.])", html), path
    for edition in EDITIONS:
        html = pages[f"{edition}/2025-06-01/index.html"].decode()
        assert "&lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }} Q&amp;A &#34;quotes&#34;" in html
        assert "&lt;think&gt;tags&lt;/think&gt;" in html
        link = '<a href="https://example.org/x?a=1&amp;b=2">https://example.org/x?a=1&amp;b=2</a>)'
        assert link in html
    assert "{% if true %}x{% endif %}" in pages["en/2025-06-01/index.html"].decode()


def test_user_templates_override_builtin(tmp_path, site_config, site_digests):
    user = tmp_path / "my-templates" / "site"
    user.mkdir(parents=True)
    (user / "style.css").write_text("body { color: rebeccapurple; }\n", encoding="utf-8")
    config = site_config.model_copy(
        update={"paths": site_config.paths.model_copy(update={"templates": user.parent})}
    )
    html = issue_files(config, site_digests[0])["ko/2025-01-22/index.html"].decode()
    assert "rebeccapurple" in html and "Apple SD Gothic Neo" not in html


# --- the writer ------------------------------------------------------------------


def test_two_builds_are_byte_identical_and_a_rerun_writes_nothing(
    tmp_path, site_config, site_digests
):
    first = write_site(site_config, site_digests)
    assert first.written and first.deleted == ()
    other = site_config.model_copy(
        update={"paths": site_config.paths.model_copy(update={"public": tmp_path / "other"})}
    )
    write_site(other, list(reversed(site_digests)))
    assert tree(site_config.paths.public) == tree(tmp_path / "other")

    again = write_site(site_config, site_digests)
    assert again.written == () and again.deleted == ()
    assert again.unchanged == len(first.written)


def test_expected_layout(site_config, site_digests):
    write_site(site_config, site_digests)
    public = site_config.paths.public
    for path in (
        "index.html",
        "ko/index.html",
        "en/2025-04-04/index.html",
        "both/tags/reasoning/index.html",
        "feeds/ko/atom.xml",
        "feeds/en/rss.xml",
        "feeds/both/tags/reasoning/atom.xml",
        MANIFEST,
    ):
        assert (public / path).is_file(), path


def test_incremental_publish_rewrites_only_that_date(site_config, site_digests):
    public = site_config.paths.public
    write_site(site_config, site_digests[:2])
    before = {
        path: (path.stat().st_mtime_ns, path.read_bytes())
        for path in public.glob("*/2025-0[14]-*/index.html")
    }
    assert len(before) == 6

    result = write_site(site_config, site_digests, date=dt.date(2025, 5, 19))

    new_pages = {f"{edition}/2025-05-19/index.html" for edition in EDITIONS}
    assert new_pages <= set(result.written)
    assert not [path for path in result.written if "2025-01-22" in path or "2025-04-04" in path]
    assert "ko/index.html" in result.written and "feeds/ko/atom.xml" in result.written
    for path, (mtime, data) in before.items():
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == data
    # The manifest still knows the older pages, so a later full build can clean up.
    assert "ko/2025-01-22/index.html" in (public / MANIFEST).read_text(encoding="utf-8")


def test_full_build_deletes_stale_files_but_never_user_files(site_config, site_digests):
    public = site_config.paths.public
    write_site(site_config, site_digests)
    (public / "CNAME").write_text("papers.example.org\n", encoding="utf-8")
    assert (public / "ko/tags/transformer/index.html").exists()  # only in 2025-04-04

    dry = write_site(site_config, [site_digests[0], site_digests[2]], dry_run=True)
    assert "ko/2025-04-04/index.html" in dry.deleted
    assert (public / "ko/2025-04-04/index.html").exists()  # dry run: nothing deleted

    result = write_site(site_config, [site_digests[0], site_digests[2]])
    assert result.deleted == dry.deleted and result.written == dry.written
    assert "feeds/ko/tags/transformer/atom.xml" in result.deleted
    for edition in EDITIONS:
        assert not (public / edition / "2025-04-04").exists()  # the folder is gone too
        assert (public / edition / "2025-05-19" / "index.html").exists()
    assert not (public / "ko/tags/transformer").exists()
    assert (public / "CNAME").read_text(encoding="utf-8") == "papers.example.org\n"


def test_dry_run_writes_nothing(site_config, site_digests):
    result = write_site(site_config, site_digests, dry_run=True)
    assert result.written and not site_config.paths.public.exists()
    real = write_site(site_config, site_digests)
    assert real.written == result.written


def test_a_tampered_manifest_cannot_delete_outside_public(tmp_path, site_config, site_digests):
    public = site_config.paths.public
    public.mkdir(parents=True)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep", encoding="utf-8")
    (public / MANIFEST).write_text(
        '{"version": 1, "files": ["../precious.txt", "/etc/hostname", "CNAME"]}',
        encoding="utf-8",
    )
    (public / "CNAME").write_text("x", encoding="utf-8")
    result = write_site(site_config, site_digests)
    assert outside.exists()
    assert result.deleted == ("CNAME",)  # a listed file inside public/ is ours to delete


def test_publishing_a_missing_date_is_a_clear_error(site_config, site_digests):
    from newsletter.errors import NewsletterError

    with pytest.raises(NewsletterError, match="2030-01-01"):
        write_site(site_config, site_digests, date=dt.date(2030, 1, 1))

"""Browsing the archive: pagination with stable URLs, the tag index, sitemaps,
robots.txt, Open Graph, relative URLs for file://, and work in proportion to
what changed (keys: nothing renders when nothing changed)."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import jinja2
import pytest

from newsletter.model import Digest, Entry
from newsletter.site import MANIFEST, index_files, issue_files, write_site

SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
START = dt.date(2025, 1, 1)


def day(number: int, tags: tuple[str, ...] = ("rl",), title: str = "") -> Digest:
    """Issue `number` (1-based) from 2025-01-01: one paper, given tags."""
    date = START + dt.timedelta(days=number - 1)
    entry = Entry(
        title or f"Paper {number}",
        ("Kim",),
        "Abstract.",
        f"모델을 {number}번째로 학습한 결과입니다.",
        f"Comment {number}.",
        tags,
    )
    return Digest(date, (entry,), f"{date}.txt")


def paged(config, size: int):
    return config.model_copy(update={"site": config.site.model_copy(update={"page_size": size})})


def dates_on(html: str) -> list[str]:
    return re.findall(r'<h2><a href="(?:\.\./\.\./)?(\d{4}-\d\d-\d\d)/', html)


# --- pagination -------------------------------------------------------------------------


def test_pages_are_numbered_from_the_oldest_and_list_the_newest_first(site_config):
    config = paged(site_config, 3)
    files = index_files(config, [day(n) for n in range(1, 8)], search=False)
    front = files["ko/index.html"].decode()
    assert dates_on(front) == ["2025-01-07", "2025-01-06", "2025-01-05"]
    assert '<a rel="next" href="page/2/">' in front  # 2025-01-04 is on page 2
    page1 = files["ko/page/1/index.html"].decode()
    assert dates_on(page1) == ["2025-01-03", "2025-01-02", "2025-01-01"]
    assert '<a rel="prev" href="../2/">' in page1 and 'rel="next"' not in page1.split("<main>")[1]
    page3 = files["ko/page/3/index.html"].decode()
    assert dates_on(page3) == ["2025-01-07"]
    assert '<a rel="prev" href="../../">' in page3 and '<a rel="next" href="../2/">' in page3
    assert "ko/page/4/index.html" not in files


def test_a_new_day_leaves_older_pages_byte_identical(site_config):
    config = paged(site_config, 3)
    before = index_files(config, [day(n) for n in range(1, 8)], search=False)
    after = index_files(config, [day(n) for n in range(1, 9)], search=False)
    assert before["ko/page/1/index.html"] == after["ko/page/1/index.html"]
    assert before["ko/page/2/index.html"] == after["ko/page/2/index.html"]
    assert before["ko/page/3/index.html"] != after["ko/page/3/index.html"]


def test_a_list_that_fits_has_no_numbered_pages(site_config, site_digests):
    files = index_files(site_config, site_digests, search=False)
    assert not [path for path in files if "/page/" in path]


def test_publishing_a_day_writes_only_what_lists_it(site_config):
    config = paged(site_config, 3)
    days = [day(n, tags=("rl",) if n % 2 else ("moe",)) for n in range(1, 10)]
    write_site(config, days[:-1])
    result = write_site(config, days, date=days[-1].date)
    written = set(result.written)
    assert {f"{e}/2025-01-09/index.html" for e in ("ko", "en", "both")} <= written
    assert "ko/page/3/index.html" in written and "ko/index.html" in written
    assert "ko/page/1/index.html" not in written and "ko/page/2/index.html" not in written
    assert "ko/tags/rl/index.html" in written and "ko/tags/moe/index.html" not in written
    assert "feeds/ko/tags/moe/atom.xml" not in written
    assert not [p for p in written if re.match(r"\w+/2025-01-0[1-8]/", p)]
    # The next full build agrees: nothing else had to change.
    assert write_site(config, days).written == ()


def test_tag_pages_are_paginated_too(site_config):
    config = paged(site_config, 2)
    files = index_files(config, [day(n, tags=("rl", "추론")) for n in range(1, 6)], search=False)
    front = files["ko/tags/추론/index.html"].decode()
    assert "논문 5편" in front and '<a rel="next" href="page/2/">' in front
    page = files["ko/tags/추론/page/1/index.html"].decode()
    assert "Paper 2" in page and "Paper 1" in page and "Paper 3" not in page
    assert 'href="../../../../2025-01-01/#paper-1-' in page  # links climb out of page/1/


def test_tag_index_lists_every_tag_with_its_count(site_config, site_digests):
    files = index_files(site_config, site_digests, search=False)
    html = files["en/tags/index.html"].decode()
    assert '<a href="reasoning/">#reasoning</a> <span class="count">' in html
    counts = dict(re.findall(r'href="([^"/]+)/">#[^<]+</a> <span class="count">(\d+)</span>', html))
    assert counts["reasoning"] == str(
        sum("reasoning" in e.tags for d in site_digests for e in d.entries)
    )
    assert "22 tags" in html or re.search(r"\d+ tags", html)
    ko = files["ko/tags/index.html"].decode()
    assert re.search(r"태그 \d+개", ko)
    edition = files["en/index.html"].decode()
    assert 'href="tags/">All tags →</a>' in edition


# --- meta, sitemaps, robots --------------------------------------------------------------


def test_issue_pages_have_open_graph_and_twitter_cards(site_config, site_digests):
    pages = issue_files(site_config, site_digests[1])
    ko = pages["ko/2025-04-04/index.html"].decode()
    en = pages["en/2025-04-04/index.html"].decode()
    assert '<meta property="og:locale" content="ko_KR">' in ko
    assert '<meta property="og:locale" content="en_US">' in en
    assert '<meta property="og:description" content="수학 및 코드 데이터 371B.' in ko
    assert '<meta property="og:description" content="The corpus contains 371B tokens' in en
    assert '<meta name="twitter:card" content="summary">' in en
    assert '<meta property="og:url" content="https://example.org/papers/en/2025-04-04/">' in en
    assert '<meta name="description" content="The corpus contains 371B' in en


def test_descriptions_are_shortened_and_escaped(site_config):
    long = '"Quoted" <b>bold</b> & ' + "긴 문장입니다 " * 60
    entry = Entry("T", ("A",), "", long, long, ("x",))
    html = issue_files(site_config, Digest(dt.date(2025, 1, 1), (entry,), "x"))[
        "ko/2025-01-01/index.html"
    ]
    content = re.search(rb'<meta property="og:description" content="([^"]*)">', html).group(1)
    assert content.startswith(b"&#34;Quoted&#34; &lt;b&gt;bold&lt;/b&gt; &amp;")
    text = (
        content.decode()
        .replace("&#34;", '"')
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
    )
    assert len(text) <= 200 and text.endswith("…")


def test_every_page_discovers_its_editions_feeds(site_config, site_digests):
    pages = {**issue_files(site_config, site_digests[0]), **index_files(site_config, site_digests)}
    for path, data in pages.items():
        html = data.decode()
        edition = "ko" if path == "index.html" else path.split("/")[0]
        for name, kind in (
            ("atom.xml", "atom+xml"),
            ("rss.xml", "rss+xml"),
            ("feed.json", "feed+json"),
        ):
            link = f'type="application/{kind}" title="'
            assert link in html, path
            assert f"https://example.org/papers/feeds/{edition}/{name}" in html, path
    tag = pages["ko/tags/reasoning/index.html"].decode()
    assert 'href="https://example.org/papers/feeds/ko/tags/reasoning/feed.json"' in tag


def test_sitemaps_list_every_page_with_its_content_time(site_config, site_digests):
    write_site(site_config, site_digests)
    public = site_config.paths.public
    index = ET.parse(public / "sitemap.xml").getroot()
    children = [s.findtext(f"{SITEMAP}loc") for s in index.iter(f"{SITEMAP}sitemap")]
    assert "https://example.org/papers/sitemaps/ko-2025.xml" in children
    urls = {}
    for child in children:
        path = public / child.removeprefix("https://example.org/papers/")
        for url in ET.parse(path).getroot().iter(f"{SITEMAP}url"):
            urls[url.findtext(f"{SITEMAP}loc")] = url.findtext(f"{SITEMAP}lastmod")
    pages = {
        "https://example.org/papers/" + p.relative_to(public).as_posix().removesuffix("index.html")
        for p in public.rglob("index.html")
    }
    from urllib.parse import unquote

    assert {unquote(url) for url in urls} == pages
    assert urls["https://example.org/papers/en/2025-04-04/"] == "2025-04-04T00:00:00+09:00"
    assert urls["https://example.org/papers/en/"] == "2025-05-19T00:00:00+09:00"
    robots = (public / "robots.txt").read_text(encoding="utf-8")
    assert "Sitemap: https://example.org/papers/sitemap.xml" in robots


def test_a_correction_moves_lastmod_and_nothing_else(site_config, site_digests):
    write_site(site_config, site_digests, now=dt.datetime(2025, 6, 1, tzinfo=dt.UTC))
    old, april, new = site_digests
    entries = (april.entries[0].__class__(**{**april.entries[0].__dict__, "comment_en": "Fixed."}),)
    fixed = Digest(april.date, entries + april.entries[1:], april.source)
    later = dt.datetime(2025, 7, 1, 9, 30, tzinfo=dt.UTC)
    write_site(site_config, [old, fixed, new], now=later)
    sitemap = (site_config.paths.public / "sitemaps/en-2025.xml").read_text(encoding="utf-8")
    assert (
        f"<loc>https://example.org/papers/en/2025-04-04/</loc><lastmod>{later.isoformat()}"
        in sitemap
    )
    assert (
        "<loc>https://example.org/papers/en/2025-01-22/</loc><lastmod>2025-01-22T00:00:00+09:00"
        in sitemap
    )
    ko = (site_config.paths.public / "sitemaps/ko-2025.xml").read_text(encoding="utf-8")
    assert "<lastmod>2025-04-04T00:00:00+09:00" in ko  # ko shows the Korean comment: unchanged


# --- relative URLs ------------------------------------------------------------------------


def test_relative_urls_name_index_html_for_file_urls(site_config, site_digests):
    config = site_config.model_copy(
        update={"site": site_config.site.model_copy(update={"relative_urls": True})}
    )
    pages = index_files(config, site_digests)
    for digest in site_digests:
        pages |= issue_files(config, digest)
    for path, data in pages.items():
        html = data.decode()
        for href in re.findall(r'href="([^"]+)"', html):
            if href.startswith(("https://", "#")):
                continue
            target = href.split("#")[0]
            assert target.endswith("index.html"), (path, href)
            resolved = (Path("/site") / path).parent / target
            assert str(resolved.resolve()).removeprefix("/site/") in pages or "search/" in target, (
                path,
                href,
            )
    # Off by default: pretty URLs for servers.
    assert (
        'href="../2025-01-22/index.html"'
        not in issue_files(site_config, site_digests[1])["ko/2025-04-04/index.html"].decode()
    )


# --- keys: render what changed ---------------------------------------------------------------


@pytest.fixture
def renders(monkeypatch):
    """How many templates were rendered (jinja2.Template.render calls)."""
    count = {"n": 0}
    original = jinja2.Template.render

    def counting(self, *args, **kwargs):
        count["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(jinja2.Template, "render", counting)
    return count


def test_a_rebuild_with_nothing_changed_renders_nothing(site_config, site_digests, renders):
    write_site(site_config, site_digests)
    assert renders["n"] > 100
    renders["n"] = 0
    again = write_site(site_config, site_digests)
    assert again.written == () and renders["n"] == 0


def test_a_changed_template_renders_again(tmp_path, site_config, site_digests, renders):
    user = tmp_path / "templates" / "site"
    user.mkdir(parents=True)
    (user / "style.css").write_text("body { color: teal; }\n", encoding="utf-8")
    config = site_config.model_copy(
        update={"paths": site_config.paths.model_copy(update={"templates": user.parent})}
    )
    write_site(config, site_digests)
    (user / "style.css").write_text("body { color: navy; }\n", encoding="utf-8")
    renders["n"] = 0
    result = write_site(config, site_digests)
    assert renders["n"] > 100
    assert "ko/2025-04-04/index.html" in result.written
    assert "navy" in (config.paths.public / "ko/2025-04-04/index.html").read_text(encoding="utf-8")


def test_a_file_changed_by_hand_is_written_again(site_config, site_digests):
    write_site(site_config, site_digests)
    page = site_config.paths.public / "en/index.html"
    page.write_text("changed", encoding="utf-8")
    assert write_site(site_config, site_digests).written == ("en/index.html",)
    page.unlink()
    assert write_site(site_config, site_digests).written == ("en/index.html",)


def test_manifest_version_2_is_read_and_upgraded(site_config, site_digests):
    import json

    write_site(site_config, site_digests)
    path = site_config.paths.public / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["version"] = 2
    manifest["files"] = sorted(manifest["files"])
    path.write_text(json.dumps(manifest), encoding="utf-8")
    result = write_site(site_config, site_digests)
    assert result.written == () and result.deleted == ()
    assert json.loads(path.read_text(encoding="utf-8"))["version"] == 3


# --- worker processes ---------------------------------------------------------------------------


# Each failure below, for a public folder that exists (files replaced one by
# one through temp files) and one that does not yet (a first build: written in
# a staging folder beside it, renamed into place by the flush).
FRESH = pytest.mark.parametrize("fresh", [False, True], ids=["existing", "first build"])


def _public(tmp_path: Path, fresh: bool) -> Path:
    public = tmp_path / "public"
    if not fresh:
        public.mkdir()
    return public


def _nothing_left(tmp_path: Path, fresh: bool) -> bool:
    """No file anywhere; no staging folder; public itself only if it was there."""
    return _left(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == (
        [] if fresh else ["public"]
    )


def test_pages_rendered_in_worker_processes_are_the_same(
    tmp_path, site_config, site_digests, monkeypatch
):
    from newsletter.site import writer

    write_site(site_config, site_digests)
    other = site_config.model_copy(
        update={"paths": site_config.paths.model_copy(update={"public": tmp_path / "forked"})}
    )
    monkeypatch.setattr(writer, "_workers", lambda jobs: 2)
    result = write_site(other, list(reversed(site_digests)))
    assert len(result.written) > 200

    def tree(folder: Path) -> dict[str, bytes]:
        return {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file()
        }

    assert tree(site_config.paths.public) == tree(tmp_path / "forked")


def test_an_error_in_a_worker_is_raised_as_itself(tmp_path, site_config, site_digests, monkeypatch):
    from newsletter.site import writer

    user = tmp_path / "templates" / "site"
    user.mkdir(parents=True)
    (user / "tag.html").write_text("{{ no_such_value }}", encoding="utf-8")
    config = site_config.model_copy(
        update={"paths": site_config.paths.model_copy(update={"templates": user.parent})}
    )
    monkeypatch.setattr(writer, "_workers", lambda jobs: 2)
    with pytest.raises(jinja2.UndefinedError, match="no_such_value"):
        write_site(config, site_digests)


def test_publishing_a_corrected_day_updates_the_tag_it_left(site_config):
    days = [day(1, tags=("rl",)), day(2, tags=("rl", "moe"))]
    write_site(site_config, days)
    fixed = day(2, tags=("rl",))  # the author removed #moe
    write_site(site_config, [days[0], fixed], date=fixed.date)
    public = site_config.paths.public
    rl = (public / "ko/tags/rl/index.html").read_text(encoding="utf-8")
    assert "Paper 2" in rl and "Paper 1" in rl
    assert not (public / "ko/tags/moe").exists()  # no paper has the tag any more
    assert not (public / "feeds/ko/tags/moe").exists()
    assert (public / "ko/2025-01-01/index.html").exists()  # a correction deletes no issue


def test_a_full_disk_replaces_no_file_and_leaves_no_temp_file(
    tmp_path, site_config, site_digests, monkeypatch
):
    """Pages render in two worker processes, and every file of the build is
    renamed into place after one flush: when the disk fills up (a real tmpfs)
    while the workers write, no file is replaced, none is half written, and no
    temp file is left."""
    import real_parts

    from newsletter.site import writer

    user = tmp_path / "templates" / "site"
    user.mkdir(parents=True)
    (user / "style.css").write_text("body { color: teal; }\n", encoding="utf-8")
    config = site_config.model_copy(
        update={
            "paths": site_config.paths.model_copy(update={"templates": user.parent}),
            "site": site_config.site.model_copy(update={"search": False}),
        }
    )
    monkeypatch.setattr(writer, "_workers", lambda jobs: 2)
    write_site(config, site_digests)  # how much room a build takes, on a roomy disk
    files = [p for p in config.paths.public.rglob("*") if p.is_file()]
    used = sum(-(-p.stat().st_size // 4096) for p in files)  # tmpfs counts 4 KiB pages
    pages = sum(-(-p.stat().st_size // 4096) for p in files if p.suffix == ".html")
    small = tmp_path / "small"
    small.mkdir()
    with real_parts.small_filesystem(small, size_kb=(used + pages // 2) * 4) as mount:
        public = mount / "public"
        config = config.model_copy(
            update={"paths": config.paths.model_copy(update={"public": public})}
        )
        write_site(config, site_digests)
        before = {p: p.read_bytes() for p in public.rglob("*") if p.is_file()}
        # Every page changes: the new pages and the old ones do not both fit.
        (user / "style.css").write_text("body { color: navy; }\n", encoding="utf-8")
        with pytest.raises(OSError) as full:
            write_site(config, site_digests)
        assert full.value.errno == 28  # ENOSPC
        after = {p: p.read_bytes() for p in public.rglob("*") if p.is_file()}
        assert after == before


def test_workers_take_pages_of_neighbouring_days_and_every_page_once():
    from newsletter.outputs import Output
    from newsletter.site.writer import _shares

    start = dt.date(2025, 1, 1)
    jobs = [
        Output(f"p{i}", "k", lambda: b"", pure=True, day=start + dt.timedelta(days=(i * 7) % 10))
        for i in range(10)
    ] + [Output(f"list{i}", "k", lambda: b"", pure=True) for i in range(3)]
    shares = _shares(jobs, 2)
    assert sorted(i for share in shares for i in share) == list(range(13))
    days = [sorted(jobs[i].day for i in share if jobs[i].day) for share in shares]
    assert len(days[0]) == len(days[1]) == 5
    assert days[0][-1] < days[1][0]  # one run of days each
    assert [len(share) for share in shares] in ([7, 6], [6, 7])


def test_a_failure_while_planning_leaves_no_temp_file(site_config, site_digests, monkeypatch):
    """Issue and weekly pages start rendering in worker processes while the
    build plans the rest: when planning then fails, the workers are waited
    for and every temp file they wrote is deleted; no page is put in place."""
    from newsletter.site import build, writer

    monkeypatch.setattr(writer, "_workers", lambda jobs: 2)
    started = []
    ahead = writer.Writer.render_ahead

    def render_ahead(self):
        ahead(self)
        started.append(len(self._rendering))

    def broken(*args, **kwargs):
        raise RuntimeError("planning failed")

    monkeypatch.setattr(writer.Writer, "render_ahead", render_ahead)
    monkeypatch.setattr(build, "sitemap_outputs", broken)
    with pytest.raises(RuntimeError, match="planning failed"):
        write_site(site_config, site_digests)
    assert started == [1]  # the workers had started
    public = site_config.paths.public
    assert [p for p in public.rglob("*") if p.is_file()] == []


@FRESH
def test_a_worker_that_dies_is_an_error_and_leaves_no_temp_file(tmp_path, monkeypatch, fresh):
    import os

    from newsletter.errors import NewsletterError
    from newsletter.outputs import Output
    from newsletter.site import writer

    monkeypatch.setattr(writer, "_workers", lambda jobs: 2)
    parent = os.getpid()

    def page(number: int) -> bytes:
        if number == 250 and os.getpid() != parent:
            os._exit(3)  # killed, out of memory...
        return f"page {number}".encode()

    out = writer.Writer(_public(tmp_path, fresh), False, {})
    out.add(
        Output(
            f"p{i}/index.html",
            "k",
            lambda i=i: page(i),
            pure=True,
            day=START + dt.timedelta(days=i),
        )
        for i in range(300)
    )
    with pytest.raises(NewsletterError, match="ended with code 3"):
        out.flush()
    assert _nothing_left(tmp_path, fresh)


def test_text_with_the_slot_characters_is_shown_as_written(site_config):
    """Issue and weekly pages share each issue's papers' HTML, rendered once
    with control characters where the id prefix and the tag folder go; text
    holding those characters (not from the parser, which removes them) is
    rendered without them, as written."""
    config = site_config.model_copy(update={"editions": site_config.editions[:1]})
    odd = day(3, tags=("rl", "a\x01b"), title="Slot \x00 and \x01 here")
    write_site(config, [day(1), day(2), odd])
    public = config.paths.public
    issue = (public / "ko/2025-01-03/index.html").read_text(encoding="utf-8")
    weekly = next((public / "ko/weekly").glob("*/index.html")).read_text(encoding="utf-8")
    for page in (issue, weekly):
        assert "Slot \x00 and \x01 here" in page
        assert "../tags/rl/" in page
    assert 'id="2025-01-03-slot' in weekly and 'id="slot' in issue


def test_compiled_templates_are_cached_in_the_users_cache_folder(project, cli, tmp_path):
    """Jinja2's bytecode cache lives in $XDG_CACHE_HOME/newsletter/templates;
    a cache folder that cannot be made only means no cache: the build is the
    same."""
    cache = tmp_path / "cache"
    built = cli("build", cwd=project, env={"XDG_CACHE_HOME": str(cache)})
    assert built.returncode == 0, built.stderr
    assert list((cache / "newsletter" / "templates").glob("*.cache"))
    public = project / "public"

    def tree() -> dict[str, bytes]:
        return {
            p.relative_to(public).as_posix(): p.read_bytes()
            for p in public.rglob("*")
            if p.is_file() and "pagefind" not in p.parts
        }

    first = tree()
    shutil.rmtree(public)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("", encoding="utf-8")
    again = cli("build", cwd=project, env={"XDG_CACHE_HOME": str(blocked)})
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert tree() == first


def _many_pages(count: int, page) -> list:
    from newsletter.outputs import Output

    return [
        Output(f"p{i}/index.html", "k", lambda i=i: page(i), pure=True, day=START + dt.timedelta(i))
        for i in range(count)
    ]


def _left(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@FRESH
def test_giving_up_while_workers_are_blocked_sending_stops_them_and_leaves_nothing(
    tmp_path, monkeypatch, fresh
):
    """Two workers whose answers are larger than a pipe holds, and a build
    that fails before reading them (Writer.discard): the workers are stopped,
    their temp files deleted, and nothing hangs (a worker's copy of another's
    pipe used to keep it blocked)."""
    import multiprocessing

    from newsletter.site import writer

    monkeypatch.setattr(writer, "_workers", lambda jobs: 2)
    out = writer.Writer(_public(tmp_path, fresh), False, {})
    out.add(_many_pages(4000, lambda i: b"x"))
    out.render_ahead()
    [rendering] = out._rendering
    for worker in rendering._workers:  # both have answered: blocked in send
        assert worker.reader.poll(None)
    out.discard()
    assert _nothing_left(tmp_path, fresh)
    assert multiprocessing.active_children() == []


@FRESH
def test_an_interrupt_while_collecting_stops_the_workers_and_leaves_nothing(
    tmp_path, monkeypatch, fresh
):
    from newsletter.site import writer

    monkeypatch.setattr(writer, "_workers", lambda jobs: 2)
    out = writer.Writer(_public(tmp_path, fresh), False, {})
    out.add(_many_pages(4000, lambda i: b"x"))
    received = writer._Rendering._receive

    def interrupted(self):
        worker = self._workers[0]
        worker.reader.poll(None)  # the first worker has answered
        raise KeyboardInterrupt

    monkeypatch.setattr(writer._Rendering, "_receive", interrupted)
    with pytest.raises(KeyboardInterrupt):
        out.flush()
    assert _nothing_left(tmp_path, fresh)
    monkeypatch.setattr(writer._Rendering, "_receive", received)


@FRESH
def test_a_worker_killed_after_writing_leaves_no_temp_file(tmp_path, monkeypatch, fresh):
    """A worker that dies between writing its temp files and sending their
    names (SIGKILL, out of memory): the build fails with one line, and the
    files it wrote are swept."""
    import os
    import signal

    from newsletter.errors import NewsletterError
    from newsletter.site import writer

    monkeypatch.setattr(writer, "_workers", lambda jobs: 2)
    share = writer._render_share
    parent = os.getpid()

    def render_then_die(task):
        result = share(task)
        if os.getpid() != parent and 250 in task[0]:
            assert result[1]  # its temp files are written
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    monkeypatch.setattr(writer, "_render_share", render_then_die)
    out = writer.Writer(_public(tmp_path, fresh), False, {})
    out.add(_many_pages(300, lambda i: f"page {i}".encode()))
    with pytest.raises(NewsletterError, match="ended with code -9"):
        out.flush()
    assert _nothing_left(tmp_path, fresh)


@FRESH
def test_workers_ignore_ctrl_c_which_the_build_decides(tmp_path, monkeypatch, fresh):
    """Ctrl-C reaches the whole process group; a worker ignores it (the
    build's own process stops the workers and cleans up)."""
    import os
    import signal

    from newsletter.site import writer

    monkeypatch.setattr(writer, "_workers", lambda jobs: 2)
    parent = os.getpid()

    def page(number: int) -> bytes:
        if number == 10 and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGINT)
        return f"page {number}".encode()

    out = writer.Writer(_public(tmp_path, fresh), False, {})
    out.add(_many_pages(300, page))
    out.flush()
    assert (tmp_path / "public/p10/index.html").read_bytes() == b"page 10"
    assert len(out.written) == 300


def test_overridden_paper_templates_render_with_the_whole_page(tmp_path, site_config, site_digests):
    """Issue and weekly pages share each issue's papers' HTML only with the
    built-in site/_papers.html and site/_paper.html: an overridden one is
    included by each page, with everything the page has (here `root`), and an
    override identical to the built-in one gives the same bytes."""
    from newsletter.templating import builtin_templates

    def tree(folder: Path) -> dict[str, bytes]:
        return {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file() and p.name != MANIFEST
        }

    def build(name: str, templates: Path | None) -> Path:
        public = tmp_path / name
        paths = site_config.paths.model_copy(update={"public": public, "templates": templates})
        config = site_config.model_copy(
            update={"paths": paths, "site": site_config.site.model_copy(update={"search": False})}
        )
        write_site(config, site_digests)
        return public

    same = tmp_path / "same" / "site"
    same.mkdir(parents=True)
    shutil.copy(builtin_templates() / "site" / "_paper.html", same / "_paper.html")
    assert tree(build("built-in", None)) == tree(build("copied", same.parent))

    rooted = tmp_path / "rooted" / "site"
    rooted.mkdir(parents=True)
    text = (builtin_templates() / "site" / "_paper.html").read_text(encoding="utf-8")
    (rooted / "_paper.html").write_text(
        text.replace('<article class="paper"', '<article data-root="{{ root }}" class="paper"'),
        encoding="utf-8",
    )
    public = build("rooted", rooted.parent)
    issue = (public / "ko/2025-04-04/index.html").read_text(encoding="utf-8")
    weekly = next((public / "ko/weekly").glob("*/index.html")).read_text(encoding="utf-8")
    assert 'data-root="../../"' in issue and 'data-root="../../../"' in weekly


def test_a_weekly_page_template_of_earlier_versions_keeps_dated_ids(tmp_path, site_config):
    """Earlier weekly.html templates looped over each day's `papers`: their
    ids are still DATE-ANCHOR, as the weekly email links them."""
    user = tmp_path / "old" / "site"
    user.mkdir(parents=True)
    (user / "weekly.html").write_text(
        '{% extends "site/base.html" %}{% block content %}{% for day in days %}'
        '{% for p in day.papers %}<a id="{{ p.anchor }}"></a>{% endfor %}{% endfor %}'
        "{% endblock %}",
        encoding="utf-8",
    )
    paths = site_config.paths.model_copy(update={"templates": user.parent})
    config = site_config.model_copy(update={"paths": paths, "editions": site_config.editions[:1]})
    write_site(config, [day(1), day(2)])
    weekly = next((config.paths.public / "ko/weekly").glob("*/index.html"))
    ids = re.findall(r'id="([^"]+)"', weekly.read_text(encoding="utf-8"))
    assert ids and all(re.match(r"2025-01-0[12]-paper-", i) for i in ids), ids


def test_the_template_cache_is_only_a_folder_of_the_users_own(project, cli, tmp_path):
    """The bytecode cache holds code: a cache folder that is a symlink is not
    used, one of ours that others could write is tightened to 0700, a damaged
    cache file is compiled again, and a relative $XDG_CACHE_HOME is ignored
    (XDG Base Directory spec)."""
    import jinja2.bccache

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    linked = tmp_path / "linked"
    (linked / "newsletter").mkdir(parents=True)
    (linked / "newsletter" / "templates").symlink_to(shared)
    built = cli("build", cwd=project, env={"XDG_CACHE_HOME": str(linked)})
    assert built.returncode == 0, built.stderr
    assert (project / "public" / "ko" / "2025-04-04" / "index.html").exists()
    assert list(shared.iterdir()) == []

    loose = tmp_path / "loose"
    (loose / "newsletter" / "templates").mkdir(parents=True)
    (loose / "newsletter" / "templates").chmod(0o777)
    shutil.rmtree(project / "public")  # a build that renders pages loads templates
    built = cli("build", cwd=project, env={"XDG_CACHE_HOME": str(loose)})
    assert built.returncode == 0, built.stderr
    folder = loose / "newsletter" / "templates"
    assert folder.stat().st_mode & 0o777 == 0o700
    cached = list(folder.glob("*.cache"))
    assert cached
    for path in cached:  # damaged: the right magic bytes, then junk
        path.write_bytes(jinja2.bccache.bc_magic + b"junk")
    page = project / "public" / "ko" / "2025-04-04" / "index.html"
    before = page.read_bytes()
    page.unlink()
    built = cli("build", cwd=project, env={"XDG_CACHE_HOME": str(loose)})
    assert built.returncode == 0, built.stderr
    assert page.read_bytes() == before

    home = tmp_path / "home"
    home.mkdir()
    shutil.rmtree(project / "public")
    built = cli("build", cwd=project, env={"XDG_CACHE_HOME": "relative", "HOME": str(home)})
    assert built.returncode == 0, built.stderr
    assert list((home / ".cache" / "newsletter" / "templates").glob("*.cache"))
    assert not (project / "relative").exists()


def test_shared_papers_are_put_into_a_page_wherever_its_template_writes_them(tmp_path, site_config):
    """Built-in issue and weekly pages get each issue's papers' HTML as bytes
    put in place of a placeholder after the page is encoded
    (pages.papers_html); an overridden page gets the HTML itself: one that
    writes it twice, filters it or leaves it out gets it twice, filtered or
    not at all, and no placeholder is ever left in a page."""
    user = tmp_path / "templates" / "site"
    user.mkdir(parents=True)
    (user / "issue.html").write_text(
        "<p>{{ papers_html|striptags|length > 20 }}</p>"
        "<main>{{ papers_html }}<hr>{{ papers_html }}</main>\n",
        encoding="utf-8",
    )
    (user / "weekly.html").write_text("<main>{{ count_text }}</main>\n", encoding="utf-8")
    config = site_config.model_copy(
        update={
            "paths": site_config.paths.model_copy(update={"templates": user.parent}),
            "editions": site_config.editions[:1],
        }
    )
    write_site(config, [day(1, title="모델을 쓰는 & 법"), day(2)])
    public = config.paths.public
    issue = (public / "ko/2025-01-01/index.html").read_text(encoding="utf-8")
    assert issue.startswith("<p>True</p>")
    issue = issue.removeprefix("<p>True</p>")
    [first, second] = issue.removeprefix("<main>").removesuffix("</main>\n").split("<hr>")
    assert first == second and 'id="paper-' in first and 'id="2025-01-01-' not in first
    assert "모델을 쓰는 &amp; 법" in first and 'href="../tags/rl/"' in first
    weekly = next((public / "ko/weekly").glob("*/index.html")).read_bytes()
    assert weekly.startswith(b"<main>") and b"<article" not in weekly
    for path in public.rglob("*.html"):  # Pagefind's own files are binary
        assert b"\x02" not in path.read_bytes(), path


def test_the_disk_starts_flushing_when_the_first_worker_is_done(tmp_path, monkeypatch):
    """A worker's share received while another still renders: the file system
    starts flushing (files.flush_folder) what is written so far, once per
    worker that finishes before the last; a dry run flushes nothing."""
    from newsletter.site import writer

    monkeypatch.setattr(writer, "_workers", lambda jobs: 2)
    flushed = []
    monkeypatch.setattr(writer, "flush_folder", flushed.append)
    for dry_run in (False, True):
        out = writer.Writer(tmp_path / f"public-{dry_run}", dry_run, {})
        out.add(_many_pages(300, lambda i: f"page {i}".encode()))
        out.flush()
    assert len(flushed) == 1 and ".public-False.building-" in flushed[0]
    assert len(list((tmp_path / "public-False").rglob("index.html"))) == 300

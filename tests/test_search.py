"""Search: Pagefind bundles built with the site, Korean stems, and a reader's
query in headless Chromium on the site served over HTTP under a sub-path.

Pagefind (the pagefind-bin wheel) and, for the browser tests, Debian's chromium
and chromium-driver are real parts (tests/real_parts.py): missing, their tests
skip, and fail instead under NEWSLETTER_REQUIRE_REAL=1.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import real_parts
from static_server import serve_static
from test_site import hostile_digest

from newsletter.config import config_from_dict
from newsletter.model import Digest, Entry
from newsletter.site import search as search_index
from newsletter.site import write_site

# --- stems ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("모델을", "모델"),
        ("모델이", "모델"),
        ("모델", "모델"),
        ("데이터가", "데이터"),
        ("학습에서는", "학습"),
        ("방법으로", "방법"),
        ("llm을", "llm"),
        ("gpt-4.5의", "gpt-4.5"),
        ("아이", "아이"),  # one syllable would be left: not a particle
        ("이", "이"),
        ("model", "model"),
    ],
)
def test_stem_strips_one_particle_or_ending(word, expected):
    assert search_index.stem(word) == expected


def test_stems_of_a_text():
    text = "이 모델을 학습한 결과, 데이터가 (LLM을) 넘었다. 모델이 좋다."
    assert search_index.stems(text) == ["모델", "학습", "데이터", "llm"]


def test_records_escape_text_and_carry_stems(site_config):
    config = site_config
    [(url, html)] = [r for r in search_index.records(config, [hostile_digest()], "ko")]
    assert url.startswith("ko/2025-06-01/#")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'data-pagefind-meta="날짜:2025년 6월 1일"' in html
    [(_url, korean)] = search_index.records(config, [particle_digest()], "ko")[:1]
    assert f'<p data-pagefind-weight="{search_index.STEM_WEIGHT}">모델 서빙 방법 정리</p>' in korean
    relative = config.model_copy(
        update={"site": config.site.model_copy(update={"relative_urls": True})}
    )
    assert search_index.records(relative, [hostile_digest()], "en")[0][0].startswith(
        "en/2025-06-01/index.html#"
    )


# --- bundles ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pagefind():
    """The Pagefind binary the builds below run (a real part: tests/real_parts.py)."""
    return real_parts.pagefind()


def test_the_build_writes_a_bundle_per_edition_and_skips_it_when_unchanged(
    site_config, site_digests, pagefind
):
    first = write_site(site_config, site_digests)
    public = site_config.paths.public
    for edition in ("ko", "en", "both"):
        entry = json.loads((public / f"pagefind/{edition}/pagefind-entry.json").read_bytes())
        language = "en" if edition == "en" else "ko"
        assert list(entry["languages"]) == [language]
        assert entry["languages"][language]["page_count"] == 14  # one record per paper
        page = (public / f"{edition}/search/index.html").read_text(encoding="utf-8")
        assert f'data-bundle="../../pagefind/{edition}/"' in page
        assert "pagefind-ui.js" in page
    assert first.search_seconds > 0
    assert any(path.startswith("pagefind/ko/fragment/") for path in first.written)
    issue = (public / "ko/2025-04-04/index.html").read_text(encoding="utf-8")
    assert '<form class="search-form" role="search" action="../../ko/search/"' in issue
    again = write_site(site_config, site_digests)
    assert again.search_seconds == 0 and again.written == ()
    assert again.unchanged == len(first.written)


def test_a_new_day_rebuilds_the_index_and_drops_stale_files(site_config, site_digests, pagefind):
    write_site(site_config, site_digests[:2])
    public = site_config.paths.public
    before = {p for p in (public / "pagefind/ko").rglob("*") if p.is_file()}
    result = write_site(site_config, site_digests, date=site_digests[2].date)
    after = {p for p in (public / "pagefind/ko").rglob("*") if p.is_file()}
    entry = json.loads((public / "pagefind/ko/pagefind-entry.json").read_bytes())
    assert entry["languages"]["ko"]["page_count"] == 14
    assert result.search_seconds > 0 and before - after  # the old index chunks are gone
    kept = {p.relative_to(public).as_posix() for p in before & after}
    rewritten = [p for p in result.written if p in kept and p.startswith("pagefind/ko/")]
    assert rewritten in ([], ["pagefind/ko/pagefind-entry.json"]), rewritten


def test_search_off_removes_the_box_and_the_bundle(site_config, site_digests, pagefind):
    write_site(site_config, site_digests)
    off = site_config.model_copy(
        update={"site": site_config.site.model_copy(update={"search": False})}
    )
    result = write_site(off, site_digests)
    public = site_config.paths.public
    assert not (public / "pagefind").exists() and not (public / "ko/search").exists()
    assert '<form class="search-form"' not in (public / "ko/2025-04-04/index.html").read_text(
        encoding="utf-8"
    )
    assert "ko/search/index.html" in result.deleted and result.warnings == ()


def test_no_pagefind_binary_builds_the_site_with_a_warning(cli, project, pagefind):
    missing = {"PAGEFIND_BINARY_PATH": str(project / "no-such-pagefind")}
    result = cli("build", cwd=project, env=missing)
    assert result.returncode == 0, result.stderr
    assert "warning: search is off" in result.stderr and "cannot run" in result.stderr
    public = project / "public"
    assert (public / "ko/2025-04-04/index.html").is_file()
    assert '<form class="search-form"' not in (public / "ko/index.html").read_text(encoding="utf-8")
    assert not (public / "pagefind").exists()
    # With the binary back, the next build adds search.
    assert cli("build", cwd=project).returncode == 0
    assert '<form class="search-form"' in (public / "ko/index.html").read_text(encoding="utf-8")


# --- in the browser -------------------------------------------------------------------------

PARTICLE_PAPERS = (
    ("Sparse Serving of Large Models", "이 모델을 서빙하는 방법을 정리했다."),
    ("Another Reasoning Study", "새 모델이 추론에서 강하다."),
    ("Plain Title Without Particles", "모델 구조 비교."),
    ("Unrelated Work", "데이터 정제에 대한 연구."),
)


def particle_digest() -> Digest:
    entries = tuple(
        Entry(title, ("Hong Gildong",), "An abstract.", comment, "English comment.", ("search",))
        for title, comment in PARTICLE_PAPERS
    )
    return Digest(dt.date(2025, 6, 2), entries, "particles.txt")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    from helpers import start_chromium

    browser = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    browser.set_page_load_timeout(30)
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def served(tmp_path_factory, site_digests, pagefind):
    """The samples and the particle digest, built for https://example.org/papers/
    and served at http://127.0.0.1:PORT/papers/."""
    base = tmp_path_factory.mktemp("search-site")
    raw = {"site": {"base_url": "https://example.org/papers/"}, "paths": {"public": "public"}}
    config = config_from_dict(raw, base=base)
    result = write_site(config, [*site_digests, particle_digest()])
    assert result.warnings == ()
    with serve_static(config.paths.public, "/papers/") as url:
        yield url, config.paths.public


def search_from_header(driver, url: str, query: str) -> list[tuple[str, str]]:
    """Type the query into the page's search box, submit, and wait for
    Pagefind's first results: [(title, href)] in rank order."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    box = driver.find_element(By.CSS_SELECTOR, "form.search-form input[name=q]")
    box.send_keys(query)
    box.submit()

    def results(d):
        # Done when the list is there and no result is a loading placeholder:
        # Pagefind UI shows each result's title only once its data fragment has
        # loaded, so the first link alone may be one of several still coming.
        if not d.find_elements(By.CSS_SELECTOR, ".pagefind-ui__results"):
            return False
        if d.find_elements(By.CSS_SELECTOR, ".pagefind-ui__results .pagefind-ui__loading"):
            return False
        links = d.find_elements(By.CSS_SELECTOR, ".pagefind-ui__result-link")
        return [(a.text, a.get_attribute("href")) for a in links] or False

    return WebDriverWait(driver, 30).until(results, f"no search results for {query!r}")


@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("MegaMath", "MegaMath: Pushing the Limits of Open Math Corpora"),
        ("Zengzhi Wang", "MegaMath: Pushing the Limits of Open Math Corpora"),  # an author
        ("서빙하는", "Sparse Serving of Large Models"),  # a word of a Korean comment
    ],
)
def test_a_query_finds_the_paper_first_under_a_sub_path(driver, served, query, first):
    served, _public = served
    found = search_from_header(driver, served + "ko/", query)
    assert found and found[0][0] == first, found
    _title, href = found[0]
    assert href.startswith(served + "ko/") and "/#" in href
    driver.get(href)
    anchor = href.split("#", 1)[1]
    assert driver.execute_script(f"return !!document.getElementById({json.dumps(anchor)})")


def test_a_tag_finds_its_papers(driver, served):
    served, _public = served
    found = search_from_header(driver, served + "en/", "inference-time-scaling")
    assert any("Inference-Time Scaling for Generalist Reward Modeling" in t for t, _ in found)
    assert all("/papers/en/" in href for _, href in found)  # the edition's own index


def test_korean_particles_match_in_both_directions(driver, served):
    served, _public = served
    titles = {title for title, _ in PARTICLE_PAPERS[:3]}
    for query in ("모델", "모델을", "모델이"):
        found = {t for t, _ in search_from_header(driver, served + "ko/", query)}
        assert titles <= found, (query, found)
        assert "Unrelated Work" not in found


def test_pagefind_alone_misses_particles(driver, served):
    """What we measured: without our query stems, Pagefind finds `모델을` only
    where that exact form (or a longer word) is written."""
    served, _public = served
    driver.get(served + "ko/search/")
    found = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        (async () => {
          const pagefind = await import(new URL("../../pagefind/ko/pagefind.js", location.href));
          const search = await pagefind.search("모델을");
          const data = await Promise.all(search.results.map((r) => r.data()));
          done(data.map((d) => d.meta.title));
        })().catch((e) => done(String(e)));
        """
    )
    assert found == ["Sparse Serving of Large Models"]  # not 모델이's paper, nor 모델's


def test_query_stems_are_the_same_in_the_browser(driver, served):
    served, _public = served
    words = ["모델을", "데이터가", "학습에서는", "llm을", "아이", "이", "model", "방법으로"]
    driver.get(served + "ko/search/")
    script = "return arguments[1].map((w) => { const m = new RegExp(arguments[0]).exec(w); return m ? m[1] : w; });"
    in_browser = driver.execute_script(script, search_index.PARTICLE_PATTERN, words)
    assert in_browser == [search_index.stem(word) for word in words]


def test_search_page_opened_from_disk_says_it_needs_a_server(driver, served):
    from selenium.webdriver.common.by import By

    _url, public = served
    driver.get((public / "ko" / "search" / "index.html").as_uri())
    text = driver.find_element(By.ID, "search").text
    assert text == "검색은 웹 서버에 올린 사이트에서 됩니다 (파일로 열면 안 됩니다)."

"""Corrections reach feed readers: a changed issue's Atom `updated`, the feed's
`updated` and RSS `lastBuildDate` move to the time of the change; what did not
change stays byte-identical; papers in tag feeds have distinct `updated`.

The build's clock is injected (`now=`): nothing here depends on the wall clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from email.utils import parsedate_to_datetime
from pathlib import Path

import feedparser
from lxml import etree

from newsletter.digest import format_digest
from newsletter.feeds import feed_files
from newsletter.model import Digest
from newsletter.publish import build, publish
from newsletter.site import MANIFEST, write_site

ATOM = "{http://www.w3.org/2005/Atom}"
SEOUL = dt.timezone(dt.timedelta(hours=9))
FIRST = dt.datetime(2025, 6, 1, 8, 0, tzinfo=SEOUL)
FIX = dt.datetime(2025, 6, 2, 21, 30, 15, tzinfo=SEOUL)
LATER = dt.datetime(2025, 6, 9, 12, 0, tzinfo=SEOUL)


def tree(public: Path) -> dict[str, bytes]:
    return {
        p.relative_to(public).as_posix(): p.read_bytes()
        for p in sorted(public.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def atom_times(data: bytes) -> tuple[dt.datetime, dict[str, dt.datetime]]:
    """(feed updated, {entry id: entry updated}) of an Atom feed."""
    root = etree.fromstring(data)
    feed = dt.datetime.fromisoformat(root.findtext(f"{ATOM}updated"))
    entries = {
        e.findtext(f"{ATOM}id"): dt.datetime.fromisoformat(e.findtext(f"{ATOM}updated"))
        for e in root.iter(f"{ATOM}entry")
    }
    return feed, entries


def last_build(data: bytes) -> dt.datetime:
    return parsedate_to_datetime(etree.fromstring(data).findtext("channel/lastBuildDate"))


def corrected(digest: Digest, **changes: str) -> Digest:
    """The digest with its second paper's fields replaced (a typo fixed)."""
    entries = list(digest.entries)
    entries[1] = dataclasses.replace(entries[1], **changes)
    return dataclasses.replace(digest, entries=tuple(entries))


def test_a_correction_moves_updated_and_nothing_else(site_config, site_digests):
    public = site_config.paths.public
    write_site(site_config, site_digests, now=FIRST)
    before = tree(public)
    old, april, new = site_digests
    fixed = corrected(april, comment_en=april.entries[1].comment_en.replace("MoE", "MoE (fixed)"))
    assert fixed != april

    result = write_site(site_config, [old, fixed, new], now=FIX)
    after = tree(public)

    april_id = "https://example.org/papers/{}/2025-04-04/"
    for edition in ("en", "both"):  # the English comment is in these editions
        feed, entries = atom_times(after[f"feeds/{edition}/atom.xml"])
        assert entries[april_id.format(edition)] == FIX
        assert feed == FIX
        assert last_build(after[f"feeds/{edition}/rss.xml"]) == FIX
        item = feedparser.parse(after[f"feeds/{edition}/atom.xml"]).entries[1]
        assert item.published_parsed[:3] == (2025, 4, 3)  # published does not move
        # The other issues keep their times.
        _, earlier = atom_times(before[f"feeds/{edition}/atom.xml"])
        for entry_id, when in entries.items():
            if entry_id != april_id.format(edition):
                assert when == earlier[entry_id]
    # The Korean edition did not change: its feeds are byte-identical.
    for path in ("feeds/ko/atom.xml", "feeds/ko/rss.xml", "feeds/ko/tags/efficiency/atom.xml"):
        assert after[path] == before[path], path
    # The paper's tag feed moves; a tag feed without it does not.
    feed, entries = atom_times(after["feeds/en/tags/efficiency/atom.xml"])
    assert feed == FIX and FIX in entries.values()
    assert after["feeds/en/tags/math/atom.xml"] == before["feeds/en/tags/math/atom.xml"]
    assert set(result.written) == {path for path in after if after[path] != before.get(path)}

    # Rebuilt later without a change: byte-identical, whatever the clock says.
    again = write_site(site_config, [old, fixed, new], now=LATER)
    assert again.written == () and tree(public) == after


def test_a_fresh_build_does_not_depend_on_the_clock(tmp_path, site_config, site_digests):
    write_site(site_config, site_digests, now=FIRST)
    other = site_config.model_copy(
        update={"paths": site_config.paths.model_copy(update={"public": tmp_path / "other"})}
    )
    write_site(other, site_digests, now=LATER)
    assert tree(site_config.paths.public) == tree(tmp_path / "other")
    # Items seen for the first time carry their issue's time, not the clock.
    feed, entries = atom_times((tmp_path / "other/feeds/ko/atom.xml").read_bytes())
    assert feed == dt.datetime(2025, 5, 19, tzinfo=SEOUL)
    assert LATER not in entries.values()


def test_tag_feeds_have_distinct_updated_in_issue_order(site_config, site_digests):
    files = feed_files(site_config, site_digests)
    feeds = sorted(path for path in files if "/tags/" in path and path.endswith(".xml"))
    assert feeds
    several = 0
    for path in feeds:
        root = etree.fromstring(files[path])
        times = [e.findtext(f"{ATOM}updated") for e in root.iter(f"{ATOM}entry")]
        assert len(times) == len(set(times)), path
        several += len(times) > 1
        # Newest first, as listed: readers that sort by time keep the order.
        assert times == sorted(times, reverse=True), path
    assert several > 5


def test_two_corrections_in_one_build_stay_distinct(site_config, site_digests):
    public = site_config.paths.public
    write_site(site_config, site_digests, now=FIRST)
    tag = "feeds/ko/tags/efficiency/atom.xml"
    _, tagged_before = atom_times((public / tag).read_bytes())
    old, april, new = site_digests
    fixed_april = corrected(april, title=april.entries[1].title + " (v2)")
    fixed_new = corrected(new, abstract=new.entries[1].abstract + " Typo fixed.")
    write_site(site_config, [old, fixed_april, fixed_new], now=FIX)
    feed, entries = atom_times((public / "feeds/ko/atom.xml").read_bytes())
    times = sorted(entries.values(), reverse=True)
    assert feed == FIX and times[0] == FIX and times[1] == FIX - dt.timedelta(seconds=1)
    # A renamed paper (its anchor changed) counts as changed now, not as old.
    _, tagged = atom_times((public / tag).read_bytes())
    (renamed,) = set(tagged) - set(tagged_before)
    assert tagged[renamed] == FIX


def test_a_second_correction_moves_forward_never_back(site_config, site_digests):
    write_site(site_config, site_digests, now=FIRST)
    old, april, new = site_digests
    write_site(site_config, [old, corrected(april, abstract="v2."), new], now=FIX)
    # A clock that went backwards still moves the item forward.
    write_site(site_config, [old, corrected(april, abstract="v3."), new], now=FIRST)
    _, entries = atom_times((site_config.paths.public / "feeds/en/atom.xml").read_bytes())
    assert entries["https://example.org/papers/en/2025-04-04/"] == FIX + dt.timedelta(seconds=1)


def test_publishing_one_date_records_and_uses_corrections(tmp_path, site_config, site_digests):
    """publish (date mode) and build (full) share the manifest's times."""
    folder = tmp_path / "digests"
    folder.mkdir()
    config = site_config.model_copy(
        update={"paths": site_config.paths.model_copy(update={"digests": folder})}
    )
    old, april, new = site_digests
    for digest in (old, april):
        (folder / f"{digest.date}.txt").write_text(format_digest(digest), encoding="utf-8")
    build(config, now=FIRST)
    (folder / "new.txt").write_text(format_digest(new), encoding="utf-8")
    publish(config, new.date, email=False, now=FIX)
    public = config.paths.public
    feed, entries = atom_times((public / "feeds/en/atom.xml").read_bytes())
    assert feed == dt.datetime(2025, 5, 19, tzinfo=SEOUL)  # a new issue is not a correction

    fixed = corrected(april, comment_en="Corrected comment.")
    (folder / f"{april.date}.txt").write_text(format_digest(fixed), encoding="utf-8")
    publish(config, april.date, email=False, now=LATER)
    feed, entries = atom_times((public / "feeds/en/atom.xml").read_bytes())
    assert feed == LATER and entries["https://example.org/papers/en/2025-04-04/"] == LATER
    manifest = json.loads((public / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["version"] == 3
    assert manifest["revisions"]["en/2025-04-04"].endswith(LATER.isoformat())
    assert "en/2025-01-22" in manifest["revisions"]

    # The full build that follows keeps the times: nothing is rewritten.
    assert build(config, now=LATER + dt.timedelta(days=1)).site.written == ()


def test_an_unreadable_revision_is_dropped_safely(site_config, site_digests):
    public = site_config.paths.public
    write_site(site_config, site_digests, now=FIRST)
    path = public / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["revisions"]["en/2025-04-04"] = "no-time-here"
    manifest["revisions"]["ko/2025-04-04"] = 42
    path.write_text(json.dumps(manifest), encoding="utf-8")
    before = tree(public)
    result = write_site(site_config, site_digests, now=FIX)
    # Unknown again, those items take their date's time: the same bytes as before.
    assert result.written == () and tree(public) == before


def test_content_hashes_are_those_earlier_builds_recorded():
    """A build manifest keeps each item's content hash: the views' reprs (which
    the hash is of) are the ones @dataclass makes, so an upgrade counts no
    paper as corrected. The figures were recorded before the views wrote their
    own reprs."""
    from newsletter.model import Entry
    from newsletter.render import paper_views
    from newsletter.revisions import content_hash

    entry = Entry(
        title="Sparse <MoE> 모델",
        authors=("A", "O'Brien"),
        abstract="x & y",
        comment_ko="모델을 https://ex.org/a",
        comment_en="ok",
        tags=("moe", "추론"),
    )
    digest = Digest(dt.date(2025, 4, 4), (entry,), "2025-04-04.txt")
    recorded = {
        "ko": ("bc50fc2fc0717060", "51759f5ea11b36c3"),
        "en": ("19e9fab926023d40", "b0e43aa357eb3636"),
        "both": ("62d909d928f43a57", "d886a1289eff6a2e"),
    }
    for edition, (issue, paper) in recorded.items():
        views = paper_views(digest, edition)
        assert content_hash((digest.date, views)) == issue
        assert content_hash((digest.date, views[0])) == paper
        for value in (views[0], *views[0].comments, *views[0].tags):
            fields = ", ".join(
                f"{f.name}={getattr(value, f.name)!r}"
                for f in dataclasses.fields(value)
                if f.repr  # a paper's link is not part of its text
            )
            assert repr(value) == f"{type(value).__qualname__}({fields})"

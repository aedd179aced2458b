"""Writing the site: plan every output, render only what changed, write, clean up.

A build plans each output file with a key of everything its bytes depend on
(newsletter.outputs) and renders only the files whose key differs from the
last build's manifest (or that are missing): a rebuild with nothing changed
renders nothing. Publishing one date plans only what lists that date: its
issue pages, the edition and tag pages it falls on (see indexes), the feeds,
the tag index, the sitemaps and the landing page. Files are written with one
flush to disk for the whole build (see site.writer), then renamed into place.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from newsletter import render
from newsletter.errors import NewsletterError
from newsletter.model import Digest, Week
from newsletter.outputs import DigestKeys, Output, environment_key, key_of
from newsletter.revisions import Revisions, issue_key
from newsletter.site import paths, sitemap
from newsletter.site.indexes import Views, edition_outputs, tag_index_output, tag_outputs
from newsletter.site.manifest import BuildManifest, read_build_manifest, write_manifest
from newsletter.site.pages import SiteContext, issue_page, landing_page, search_page
from newsletter.site.sitemap import issue_time, sitemap_outputs
from newsletter.site.weekly import weekly_day, weekly_outputs
from newsletter.site.writer import Writer

if TYPE_CHECKING:
    from newsletter.config import Config

log = logging.getLogger("newsletter")


@dataclass(frozen=True)
class SiteResult:
    """What a write_site run changed (or, with dry_run, would change).

    search_seconds: time spent building the search index (0 when skipped);
    warnings: what the reader should know (search unavailable, ...).
    """

    written: tuple[str, ...]
    unchanged: int
    deleted: tuple[str, ...]
    search_seconds: float = 0.0
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Scope:
    """What a run plans: everything (date None) or what lists one date."""

    date: dt.date | None = None
    position: int = 0  # the date's issue in the newest-first list
    tags: set[str] = field(default_factory=set)  # slugs of its papers' tags


def issue_files(config: Config, digest: Digest, search: bool | None = None) -> dict[str, bytes]:
    """The issue page of every configured edition of one digest; search: whether
    pages get a search box (default: site.search)."""
    site = SiteContext(config, config.site.search if search is None else search)
    return {
        paths.issue_path(edition, digest.date): issue_page(site, digest, edition)
        for edition in config.editions
    }


def index_files(
    config: Config, digests: Iterable[Digest], search: bool | None = None
) -> dict[str, bytes]:
    """Landing page, edition indexes, tag pages and tag indexes (search as in
    issue_files)."""
    site = SiteContext(config, config.site.search if search is None else search)
    issues = newest_first(digests)
    groups = render.tag_groups(issues)
    keys = DigestKeys()
    outputs = [_landing(site, issues, "")]
    for edition in config.editions:
        views = Views(edition, keys)
        outputs += edition_outputs(site, edition, issues, groups, views, "", None)
        outputs.append(tag_index_output(site, edition, groups, ""))
        for group in groups:
            outputs += tag_outputs(site, edition, group, views, "", None)
    return {out.path: out.render() for out in outputs}


def write_site(
    config: Config,
    digests: Iterable[Digest],
    *,
    date: dt.date | None = None,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> SiteResult:
    """Write the site and feeds under paths.public; only changed files are touched.

    date=None is a full build: every page is planned, and files that an
    earlier build generated but this one does not are deleted. With a date,
    only that issue's pages and the pages, feeds and sitemaps that list it
    are planned; they list the issues already published and this one.

    now: the build's clock (aware; default: the wall clock), the `updated` time
    of feed items whose text changed since the last build (a correction).
    """
    import gc

    # A build makes many small objects that live until it ends: the cyclic
    # garbage collector's passes over them took a third of a rebuild's time.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _write_site(config, digests, date=date, dry_run=dry_run, now=now)
    finally:
        if enabled:
            gc.enable()


def _write_site(
    config: Config,
    digests: Iterable[Digest],
    *,
    date: dt.date | None,
    dry_run: bool,
    now: dt.datetime | None,
) -> SiteResult:
    from newsletter.site import search as search_index

    issues = newest_first(digests)
    public = config.paths.public
    manifest = read_build_manifest(public)
    revisions = Revisions(manifest.revisions, now or dt.datetime.now(config.site.tz))
    warnings: list[str] = []
    search_on = config.site.search
    if search_on:
        try:
            search_index.pagefind_binary()
        except search_index.SearchUnavailable as exc:
            search_on = False
            warnings.append(f"search is off: {exc}; the site is built without a search box")
    env = environment_key(config) + ("+search" if search_on else "")
    site = SiteContext(config, search_on, env)
    keys = DigestKeys()
    scope = _Scope()
    if date is not None:
        # Lists and feeds show what is published: the issues whose pages an
        # earlier run wrote, and this one; never a page that does not exist.
        this = _digest_on(issues, date)
        issues = [d for d in issues if d is this or _is_published(manifest, config, d)]
        if not _is_published(manifest, config, this):
            scope = _Scope(date, issues.index(this), {tag.slug for tag in _tags_of(this)})
        # else a correction: its old tags' pages may list it too, so plan
        # everything (keys skip what did not change).
    groups = render.tag_groups(issues)

    writer = Writer(public, dry_run, manifest.keys)
    try:
        _plan(site, writer, issues, groups, revisions, keys, scope, manifest, env, date)
    except BaseException:
        writer.discard()
        raise
    writer.flush()

    search_seconds = 0.0
    search_keys = dict(manifest.search)
    if search_on:
        search_keys, search_seconds = _write_search(
            config, issues, keys, manifest, writer, warnings
        )
    elif manifest.search:
        writer.drop_folders([search_index.bundle_folder(e) for e in manifest.search])
        search_keys = {}

    if date is None:
        stale = sorted(set(manifest.keys) - set(writer.keys))
        deleted = writer.delete(stale)
        keep = writer.keys
        current = {issue_key(e, d.date) for d in issues for e in config.editions}
    else:
        # Other pages were not planned: keep tracking them for the next full
        # build, which is the one that decides what is stale. A correction
        # planned every list: lists it emptied (a tag it dropped) go now.
        keep = manifest.keys | writer.keys
        if scope.date is None:
            gone = [p for p in set(manifest.keys) - set(writer.keys) if _is_list(p)]
            for path in writer.delete(sorted(gone)):
                keep.pop(path, None)
        deleted = writer.deleted
        current = {key.partition("#")[0] for key in manifest.revisions} | {
            issue_key(e, date) for e in config.editions
        }
    if not dry_run:
        write_manifest(public, keep, revisions.record(current), search_keys)
    return SiteResult(
        tuple(sorted(writer.written)),
        writer.unchanged,
        tuple(deleted),
        search_seconds,
        tuple(warnings),
    )


# --- planning ------------------------------------------------------------------------


def _plan(
    site: SiteContext,
    writer: Writer,
    issues: list[Digest],
    groups: list[render.TagGroup],
    revisions: Revisions,
    keys: DigestKeys,
    scope: _Scope,
    manifest: BuildManifest,
    env: str,
    date: dt.date | None,
) -> None:
    """Add every output of this run to the writer. The pages come first (issue,
    weekly, edition and tag pages) and start rendering (Writer.render_ahead:
    one set of worker processes) while the feeds and sitemaps are made; a
    week's page is rendered beside its days' issue pages, whose papers' HTML
    it shows (pages.papers_html)."""
    from newsletter.feeds import feed_outputs
    from newsletter.feeds.opml import build_opml

    config = site.config
    changed: list[tuple[Digest, str]] = []
    writer.add(_issue_outputs(site, issues, revisions, env, keys, scope, manifest.keys, changed))
    # The weekly pages (every week, or the week of this day) and weekly feeds.
    weeks = None if date is None else [Week.holding(date, weekly_day(config))]
    now = revisions.now or dt.datetime.now(config.site.tz)
    weekly = list(weekly_outputs(site, issues, env=env, keys=keys, now=now, weeks=weeks))
    writer.add(out for out in weekly if out.pure)
    writer.add([_landing(site, issues, env)])
    for edition in config.editions:
        views = Views(edition, keys)
        pages = None if scope.date is None else _near(len(issues), config, [scope.position])
        writer.add(edition_outputs(site, edition, issues, groups, views, env, pages))
        writer.add([tag_index_output(site, edition, groups, env)])
        for group in groups:
            if scope.date is not None and group.slug not in scope.tags:
                continue
            tag_pages = None
            if scope.date is not None:
                positions = [i for i, p in enumerate(group.papers) if p.digest.date == scope.date]
                tag_pages = _near(len(group.papers), config, positions)
            writer.add(tag_outputs(site, edition, group, views, env, tag_pages))
        if site.search:
            writer.add(
                [
                    Output(
                        paths.search_page_path(edition),
                        key_of(env, "search", edition),
                        lambda edition=edition: search_page(site, edition),
                        pure=True,
                    )
                ]
            )
    writer.render_ahead()
    for digest, edition in changed:
        issue_time(config, revisions, digest, edition, check=True)
    writer.add(out for out in weekly if not out.pure)
    tags = None if scope.date is None else scope.tags
    writer.add(feed_outputs(config, issues, groups, revisions, env=env, keys=keys, tags=tags))
    tag_names = [(group.name, group.slug) for group in groups]
    writer.add(
        [
            Output(
                "feeds.opml", key_of(env, "opml", tag_names), lambda: build_opml(config, tag_names)
            )
        ]
    )
    writer.add(sitemap_outputs(site, issues, groups, revisions, scope.date))
    writer.add([Output("robots.txt", key_of(env, "robots"), lambda: sitemap.robots_txt(config))])


def _issue_outputs(
    site: SiteContext,
    issues: list[Digest],
    revisions: Revisions,
    env: str,
    keys: DigestKeys,
    scope: _Scope,
    known: dict[str, str],
    changed: list[tuple[Digest, str]],
) -> Iterator[Output]:
    """Each chosen issue's page in each edition; the (digest, edition) pairs
    whose page must render again go to `changed`: their content may have
    changed, so the caller hashes it (issue_time with check: a correction
    moves its time, which sitemaps show) once the pages are rendering."""
    config = site.config
    chosen = issues if scope.date is None else [issues[scope.position]]
    for digest in chosen:
        for edition in config.editions:
            others = tuple(str(e) for e in config.editions if e != edition)
            path = paths.issue_path(edition, digest.date)
            key = key_of(env, "issue", str(edition), others, keys(digest))
            if not known.get(path, "").startswith(f"{key}:"):
                changed.append((digest, str(edition)))
            yield Output(
                path,
                key,
                lambda digest=digest, edition=str(edition): issue_page(site, digest, edition),
                pure=True,
                day=digest.date,
            )


def _landing(site: SiteContext, issues: list[Digest], env: str) -> Output:
    latest = issues[0] if issues else None
    latest_key = latest.date if latest else None
    return Output(
        "index.html",
        key_of(env, "landing", latest_key),
        lambda: landing_page(site, latest),
        pure=True,
    )


def _near(count: int, config: Config, positions: list[int]) -> set[int]:
    from newsletter.site.indexes import Pagination

    return Pagination(count, config.site.page_size).near(positions)


def _tags_of(digest: Digest) -> list[render.TagView]:
    return [render.tag_view(tag) for tag in digest.tags]


def _write_search(
    config: Config,
    issues: list[Digest],
    keys: DigestKeys,
    manifest: BuildManifest,
    writer: Writer,
    warnings: list[str],
) -> tuple[dict[str, str], float]:
    """Build the search bundles unless their records are unchanged; returns
    {edition: "KEY:FILES"} for the manifest and the seconds spent indexing."""
    from newsletter.site import search as search_index

    content = [keys.text(d) for d in issues]  # search records show no links
    wanted = {
        str(edition): key_of(
            search_index.pagefind_version(),
            search_index.PARTICLE_PATTERN,
            str(edition),
            config.site.relative_urls,
            content,
        )
        for edition in config.editions
    }
    folders = {e: search_index.bundle_folder(e) for e in wanted}
    gone = [search_index.bundle_folder(e) for e in manifest.search if e not in wanted]
    old = {e: value.partition(":") for e, value in manifest.search.items()}
    if all(
        old.get(e, ("",))[0] == k
        and (config.paths.public / folders[e] / "pagefind-entry.json").is_file()
        for e, k in wanted.items()
    ):
        writer.unchanged += sum(int(old[e][2] or 0) for e in wanted)
        writer.drop_folders(gone)
        return {e: manifest.search[e] for e in wanted}, 0.0
    began = time.perf_counter()
    try:
        files = search_index.build_bundles(config, issues)
    except search_index.SearchUnavailable as exc:
        warnings.append(f"search index not updated: {exc}")
        return dict(manifest.search), time.perf_counter() - began
    writer.write_bundles(files, list(folders.values()))
    writer.drop_folders(gone)
    counts = {e: sum(path.startswith(folders[e]) for path in files) for e in wanted}
    return {e: f"{k}:{counts[e]}" for e, k in wanted.items()}, time.perf_counter() - began


def newest_first(digests: Iterable[Digest]) -> list[Digest]:
    """Digests by date, newest first; two digests with one date are an error."""
    ordered = sorted(digests, key=lambda digest: digest.date, reverse=True)
    for newer, older in itertools.pairwise(ordered):
        if newer.date == older.date:
            raise NewsletterError(
                f"two digests have the date {newer.date.isoformat()}: "
                f"{newer.source}, {older.source}",
                hint="each issue date may appear in only one digest file",
            )
    return ordered


def _is_list(path: str) -> bool:
    """A tag's page or feed, or a numbered page of a list."""
    return "/tags/" in path or "/page/" in path


def _is_published(manifest: BuildManifest, config: Config, digest: Digest) -> bool:
    return all(
        paths.issue_path(edition, digest.date) in manifest.keys for edition in config.editions
    )


def _digest_on(issues: list[Digest], date: dt.date) -> Digest:
    for digest in issues:
        if digest.date == date:
            return digest
    raise NewsletterError(
        f"no digest dated {date.isoformat()} among the {len(issues)} given",
        hint="publish a date whose digest is in the digests folder and parses cleanly",
    )

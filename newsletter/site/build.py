"""Writing the site: plan every output, render only what changed, write, clean up.

A build plans each output file with a key of everything its bytes depend on
(newsletter.outputs) and renders only the files whose key differs from the
last build's manifest (or that are missing): a rebuild with nothing changed
renders nothing. Publishing one date plans only what lists that date: its
issue pages, the edition and tag pages it falls on (see indexes), the feeds,
the tag index, the sitemaps and the landing page. Files are written with one
flush to disk for the whole batch (files.write_many).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter import render
from newsletter.errors import NewsletterError
from newsletter.files import write_many
from newsletter.model import Digest
from newsletter.outputs import DigestKeys, Output, environment_key, key_of
from newsletter.revisions import Revisions, issue_key
from newsletter.site import paths, sitemap
from newsletter.site.indexes import Views, edition_outputs, tag_index_output, tag_outputs
from newsletter.site.manifest import BuildManifest, read_build_manifest, write_manifest
from newsletter.site.pages import SiteContext, issue_page, landing_page, search_page

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


@dataclass
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
    from newsletter.feeds import feed_outputs
    from newsletter.feeds.opml import build_opml
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
    site = SiteContext(config, search_on)
    env = environment_key(config) + ("+search" if search_on else "")
    keys = DigestKeys()
    scope = _Scope()
    if date is not None:
        # Lists and feeds show what is published: the issues whose pages an
        # earlier run wrote, and this one; never a page that does not exist.
        this = _digest_on(issues, date)
        issues = [d for d in issues if d is this or _is_published(manifest, config, d)]
        scope = _Scope(date, issues.index(this), {tag.slug for tag in _tags_of(this)})
    groups = render.tag_groups(issues)

    writer = _Writer(public, dry_run, manifest.keys)
    writer.add(_issue_outputs(site, issues, revisions, env, keys, scope, manifest.keys))
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
        if search_on:
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
    writer.add(_sitemaps(site, issues, groups, revisions, keys, scope))
    writer.add([Output("robots.txt", key_of(env, "robots"), lambda: sitemap.robots_txt(config))])
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
        # build, which is the one that decides what is stale.
        deleted = writer.deleted
        keep = manifest.keys | writer.keys
        current = {key.partition("#")[0] for key in manifest.revisions} | {
            issue_key(e, scope.date) for e in config.editions
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


def _issue_outputs(
    site: SiteContext,
    issues: list[Digest],
    revisions: Revisions,
    env: str,
    keys: DigestKeys,
    scope: _Scope,
    known: dict[str, str],
) -> Iterator[Output]:
    config = site.config
    chosen = issues if scope.date is None else [issues[scope.position]]
    for digest in chosen:
        for edition in config.editions:
            others = tuple(str(e) for e in config.editions if e != edition)
            path = paths.issue_path(edition, digest.date)
            key = key_of(env, "issue", str(edition), others, keys(digest))
            if not known.get(path, "").startswith(f"{key}:"):
                # Its content may have changed: hash it now (a correction moves
                # its time, which sitemaps show); pages render later, maybe
                # in worker processes.
                issue_time(config, revisions, digest, str(edition), check=True)
            yield Output(
                path,
                key,
                lambda digest=digest, edition=str(edition): issue_page(site, digest, edition),
                pure=True,
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


def issue_time(
    config: Config, revisions: Revisions, digest: Digest, edition: str, *, check: bool = False
) -> dt.datetime:
    """When an issue's text last changed in an edition (newsletter.revisions);
    check: hash its text even if a time is known (its content may have changed)."""
    key = issue_key(edition, digest.date)
    known = None if check else revisions.time(key)
    if known is not None:
        return known
    first = dt.datetime.combine(digest.date, dt.time(0, 0), tzinfo=config.site.tz)
    return revisions.changed(key, (digest.date, render.paper_views(digest, edition)), first)


def _sitemaps(
    site: SiteContext,
    issues: list[Digest],
    groups: list[render.TagGroup],
    revisions: Revisions,
    keys: DigestKeys,
    scope: _Scope,
) -> list[Output]:
    """sitemap.xml, sitemaps/E-YYYY.xml and sitemaps/lists.xml (see site.sitemap)."""
    from newsletter.site.indexes import Pagination

    config = site.config
    base = config.site.base_url
    children: list[tuple[str, dt.datetime | None]] = []
    outputs: list[Output] = []
    lists: list[tuple[str, dt.datetime | None]] = []
    all_times = []
    for edition in config.editions:
        times = {d.date: issue_time(config, revisions, d, edition) for d in issues}
        all_times += times.values()
        by_year = itertools.groupby(reversed(issues), key=lambda d: d.date.year)
        for year, group in by_year:
            entries = [
                (paths.page_url(config, paths.issue_path(edition, d.date)), times[d.date])
                for d in group
            ]
            path = f"sitemaps/{edition}-{year}.xml"
            children.append((base + path, sitemap.newest(t for _, t in entries)))
            if scope.date is None or scope.date.year == year:
                outputs.append(
                    Output(path, key_of("sitemap", entries), lambda e=entries: sitemap.urlset(e))
                )
        paging = Pagination(len(issues), config.site.page_size)
        newest = sitemap.newest(times.values())
        lists.append((paths.page_url(config, paths.edition_index_path(edition)), newest))
        for number in paging.numbered:
            start, stop = paging.bounds(number)
            when = sitemap.newest(times[d.date] for d in issues[start:stop])
            lists.append((paths.page_url(config, paths.edition_index_path(edition, number)), when))
        lists.append((paths.page_url(config, paths.tag_index_path(edition)), newest))
        for group in groups:
            tag_paging = Pagination(len(group.papers), config.site.page_size)
            front = group.papers[: tag_paging.size]
            when = sitemap.newest(times[p.digest.date] for p in front)
            lists.append((paths.page_url(config, paths.tag_page_path(edition, group.name)), when))
            for number in tag_paging.numbered:
                start, stop = tag_paging.bounds(number)
                when = sitemap.newest(times[p.digest.date] for p in group.papers[start:stop])
                lists.append(
                    (paths.page_url(config, paths.tag_page_path(edition, group.name, number)), when)
                )
        if site.search:
            lists.append((paths.page_url(config, paths.search_page_path(edition)), None))
    lists.insert(0, (base, sitemap.newest(all_times)))
    outputs.append(
        Output("sitemaps/lists.xml", key_of("sitemap", lists), lambda: sitemap.urlset(lists))
    )
    children.append((base + "sitemaps/lists.xml", sitemap.newest(t for _, t in lists)))
    children.sort()
    outputs.append(
        Output("sitemap.xml", key_of("index", children), lambda: sitemap.sitemap_index(children))
    )
    return outputs


def _write_search(
    config: Config,
    issues: list[Digest],
    keys: DigestKeys,
    manifest: BuildManifest,
    writer: _Writer,
    warnings: list[str],
) -> tuple[dict[str, str], float]:
    """Build the search bundles unless their records are unchanged; returns
    {edition: "KEY:FILES"} for the manifest and the seconds spent indexing."""
    from newsletter.site import search as search_index

    content = [keys(d) for d in issues]
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


# --- writing, stale files -------------------------------------------------------------------


class _Writer:
    """Renders planned outputs whose key changed, writes those whose bytes
    changed (or, dry, only compares), and keeps the tally."""

    BATCH = 2000  # files per flush to disk

    def __init__(self, public: Path, dry_run: bool, known: dict[str, str]) -> None:
        self.public = public
        self.root = str(public)
        self.dry_run = dry_run
        self.known = known
        self.keys: dict[str, str] = {}
        self.written: list[str] = []
        self.deleted: list[str] = []
        self.unchanged = 0
        self._pending: list[tuple[Path, bytes]] = []
        self._deferred: list[Output] = []

    def add(self, outputs: Iterable[Output]) -> None:
        for out in outputs:
            if out.path in self.keys:
                continue
            known = self.known.get(out.path, "")
            if (
                known.startswith(f"{out.key}:")
                and _size(f"{self.root}/{out.path}") == known.partition(":")[2]
            ):
                self.keys[out.path] = known
                self.unchanged += 1
                continue
            self.keys[out.path] = ""  # rendered below
            if out.pure:
                self._deferred.append(out)
                continue
            self._tally(out, _render_one(out, self.root, self.dry_run, self._pending))
            if len(self._pending) >= self.BATCH:
                self._write_pending()

    def flush(self) -> None:
        """Render the deferred pure outputs (in worker processes when there
        are many), then write what is pending."""
        jobs, self._deferred = self._deferred, []
        for index, size, changed in _render_jobs(jobs, self.root, self.dry_run):
            self._tally(jobs[index], (size, changed))
        self._write_pending()

    def _write_pending(self) -> None:
        if self._pending:
            write_many(self._pending)
            self._pending = []

    def _tally(self, out: Output, result: tuple[int, bool]) -> None:
        size, changed = result
        self.keys[out.path] = f"{out.key}:{size}"
        if changed:
            self.written.append(out.path)
        else:
            self.unchanged += 1

    def write_bundles(self, files: dict[str, bytes], folders: list[str]) -> None:
        """Write search bundles (paths relative to public/), in three steps so a
        reader never loads an entry file whose index is not there yet: the
        files named by their content's hash (Pagefind's index/, fragment/,
        filter/, *.pf_meta: present means identical, never rewritten), the
        scripts, then pagefind-entry.json. Then delete what the bundles no
        longer hold."""
        entry = sorted(p for p in files if p.endswith("pagefind-entry.json"))
        hashed = sorted(p for p in files if _content_named(p))
        scripts = sorted(set(files) - set(entry) - set(hashed))
        for step, compare in ((hashed, False), (scripts, True), (entry, True)):
            for path in step:
                target = self.public / path
                if (compare and _same(target, files[path])) or (not compare and target.is_file()):
                    self.unchanged += 1
                    continue
                self.written.append(path)
                if not self.dry_run:
                    self._pending.append((target, files[path]))
            self.flush()
        for folder in folders:
            root = self.public / folder
            for path in sorted(root.rglob("*")) if root.is_dir() else []:
                relative = path.relative_to(self.public).as_posix()
                if path.is_file() and relative not in files:
                    self.deleted.append(relative)
                    if not self.dry_run:
                        path.unlink()

    def drop_folders(self, folders: list[str]) -> None:
        """Delete whole search bundles (search turned off, edition removed)."""
        import shutil

        for folder in folders:
            root = self.public / folder
            if root.is_dir():
                self.deleted.append(folder)
                if not self.dry_run:
                    shutil.rmtree(root)
                    _remove_empty_parents(root.parent, self.public)

    def delete(self, stale: list[str]) -> list[str]:
        """Delete files we generated before and not now, then the folders they emptied."""
        for relative in stale:
            path = self.public / relative
            if not path.is_file() or path.is_symlink():
                continue
            self.deleted.append(relative)
            if not self.dry_run:
                path.unlink()
                _remove_empty_parents(path.parent, self.public)
        return self.deleted


def _render_one(
    out: Output, root: str, dry_run: bool, pending: list[tuple[Path, bytes]]
) -> tuple[int, bool]:
    """Render one output; queue it for writing if its bytes changed: (size, changed)."""
    data = out.render()
    path = Path(root) / out.path
    if _same(path, data):
        return len(data), False
    if not dry_run:
        pending.append((path, data))
    return len(data), True


# Outputs for worker processes: set before they fork, read by _render_share.
_JOBS: list[Output] = []
PARALLEL_MIN = 200  # fewer pages than this render in the build's own process


def _render_jobs(jobs: list[Output], root: str, dry_run: bool) -> list[tuple[int, int, bool]]:
    """Render and write jobs; (index, size, changed) for each. Many jobs on a
    machine with several cores go to forked worker processes, one share
    each (a page's rendering is pure Python: threads would take turns)."""
    global _JOBS
    if not jobs:
        return []
    workers = _workers(len(jobs))
    _JOBS = jobs
    try:
        if workers == 1:
            return _render_share((0, 1, root, dry_run))
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            shares = pool.map(_render_share, [(i, workers, root, dry_run) for i in range(workers)])
    finally:
        _JOBS = []
    results = [result for share in shares for result in share]
    for index, _size, changed in results:
        if changed is None:  # failed in a worker: fail here, with its traceback
            jobs[index].render()
    return results


def _render_share(task: tuple[int, int, str, bool]) -> list[tuple[int, int, bool]]:
    share, shares, root, dry_run = task
    results: list[tuple[int, int, bool]] = []
    pending: list[tuple[Path, bytes]] = []
    for index in range(share, len(_JOBS), shares):
        if shares > 1:
            try:
                size, changed = _render_one(_JOBS[index], root, dry_run, pending)
            except Exception:
                results.append((index, 0, None))  # type: ignore[arg-type]
                continue
        else:
            size, changed = _render_one(_JOBS[index], root, dry_run, pending)
        results.append((index, size, changed))
    if pending:
        write_many(pending)
    return results


def _workers(jobs: int) -> int:
    """Worker processes for `jobs` pages: one per usable core (at most 4) for a
    big build, where fork exists and no other thread could hold a lock."""
    import multiprocessing
    import threading

    if jobs < PARALLEL_MIN or threading.active_count() > 1:
        return 1
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, 4))


def _content_named(path: str) -> bool:
    """Pagefind names these files by a hash of their content."""
    return any(f"/{part}/" in path for part in ("fragment", "index", "filter")) or path.endswith(
        ".pf_meta"
    )


def _size(path: str) -> str:
    """The file's size as the manifest records it ("" when it is missing): a
    file edited by hand is rendered again even though its key is the same."""
    try:
        return str(os.stat(path).st_size)
    except OSError:
        return ""


def _same(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except (FileNotFoundError, NotADirectoryError):
        return False


def _remove_empty_parents(folder: Path, public: Path) -> None:
    root = public.resolve()
    while folder.resolve() != root and root in folder.resolve().parents:
        try:
            folder.rmdir()  # fails, as it should, when the folder is not empty
        except OSError:
            return
        folder = folder.parent

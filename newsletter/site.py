"""The archive site: issue pages, edition indexes, tag pages, and the writer.

Layout under paths.public (E is an edition: ko, en, both):

    index.html                       landing page: editions and feeds
    E/index.html                     every issue, newest first, with its papers
    E/YYYY-MM-DD/index.html          one issue
    E/tags/TAG/index.html            one tag's papers across issues, newest first
    feeds/...                        see newsletter.feeds
    .newsletter-manifest.json        what we generated, so a full build can
                                     delete what is stale and nothing else; and
                                     when each feed item's text last changed
                                     (newsletter.revisions)

An issue page depends only on its own digest (and the config), so publishing a
new day never needs to rewrite older issues' pages. Links between pages are
relative (the site works wherever it is served); canonical and feed links are
absolute, because they are for readers elsewhere.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from newsletter import render
from newsletter.errors import NewsletterError
from newsletter.files import write_if_changed
from newsletter.model import Digest, Edition
from newsletter.revisions import Revision, Revisions, issue_key

if TYPE_CHECKING:
    from newsletter.config import Config

log = logging.getLogger("newsletter")

MANIFEST = ".newsletter-manifest.json"


@dataclass(frozen=True)
class SiteResult:
    """What a write_site run changed (or, with dry_run, would change)."""

    written: tuple[str, ...]
    unchanged: int
    deleted: tuple[str, ...]


@dataclass(frozen=True)
class FeedLink:
    """A feed for <link rel="alternate"> autodiscovery and the footer."""

    type: str
    title: str
    href: str


# --- paths ------------------------------------------------------------------


def issue_path(edition: str, date: dt.date) -> str:
    return f"{edition}/{date.isoformat()}/index.html"


def edition_index_path(edition: str) -> str:
    return f"{edition}/index.html"


def tag_page_path(edition: str, tag: str) -> str:
    return f"{edition}/tags/{render.tag_slug(tag)}/index.html"


# --- the public API -----------------------------------------------------------


def issue_files(config: Config, digest: Digest) -> dict[str, bytes]:
    """The issue page of every configured edition of one digest."""
    return {
        issue_path(edition, digest.date): _render_issue(config, digest, edition)
        for edition in config.editions
    }


def index_files(config: Config, digests: Iterable[Digest]) -> dict[str, bytes]:
    """Landing page, edition indexes and tag pages, from all digests."""
    issues = newest_first(digests)
    groups = render.tag_groups(issues)
    files = {"index.html": _render_landing(config, issues)}
    for edition in config.editions:
        views = {digest.date: render.paper_views(digest, edition) for digest in issues}
        files[edition_index_path(edition)] = _render_edition_index(
            config, issues, views, groups, edition
        )
        for group in groups:
            files[tag_page_path(edition, group.name)] = _render_tag_page(
                config, group, views, edition
            )
    return files


def write_site(
    config: Config,
    digests: Iterable[Digest],
    *,
    date: dt.date | None = None,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> SiteResult:
    """Write the site and feeds under paths.public; only changed files are touched.

    date=None is a full build: every page, and files that an earlier build
    generated but this one does not are deleted. With a date, only that issue's
    pages are (re)written, plus the indexes, tag pages and feeds, which list the
    issues already published and this one.

    now: the build's clock (aware; default: the wall clock), the `updated` time
    of feed items whose text changed since the last build (a correction).
    """
    from newsletter.feeds import feed_files

    issues = newest_first(digests)
    public = config.paths.public
    manifest = read_build_manifest(public)
    old = manifest.files
    revisions = Revisions(manifest.revisions, now or dt.datetime.now(config.site.tz))
    writer = _Writer(public, dry_run)
    if date is not None:
        # Indexes and feeds list what is published: the issues whose pages an
        # earlier run wrote, and this one; never a page that does not exist.
        this = _digest_on(issues, date)
        issues = [d for d in issues if d is this or _is_published(old, config, d)]
    for digest in issues if date is None else [this]:
        writer.write_all(issue_files(config, digest))
    writer.write_all(index_files(config, issues))
    writer.write_all(feed_files(config, issues, revisions))

    if date is None:
        deleted = _delete_stale(public, sorted(old - writer.paths), dry_run)
        keep = writer.paths
        current = {issue_key(e, d.date) for d in issues for e in config.editions}
    else:
        # Other issues' pages were not rendered: keep tracking them for the next
        # full build, which is the one that decides what is stale.
        deleted, keep = [], old | writer.paths
        current = {key.partition("#")[0] for key in manifest.revisions}
    if not dry_run:
        write_manifest(public, keep, revisions.record(current))
    return SiteResult(tuple(sorted(writer.written)), writer.unchanged, tuple(deleted))


def _is_published(manifest: set[str], config: Config, digest: Digest) -> bool:
    return all(issue_path(edition, digest.date) in manifest for edition in config.editions)


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


# --- pages ------------------------------------------------------------------


def _render_issue(config: Config, digest: Digest, edition: str) -> bytes:
    language = Edition(edition).language
    papers = render.paper_views(digest, edition)
    others = [
        {"edition": other, "url": render.issue_url(config, digest.date, other)}
        for other in config.editions
        if other != edition
    ]
    return _render_page(
        config,
        "site/issue.html",
        page_lang=language,
        edition=edition,
        root="../../",
        page_title=f"{_long_date(digest.date, language)} · {config.site.title}",
        canonical=render.issue_url(config, digest.date, edition),
        feeds=_edition_feeds(config, edition),
        date_iso=digest.date.isoformat(),
        date_text=_long_date(digest.date, language),
        count_text=render.paper_count(len(papers), language),
        papers=papers,
        other_editions=others,
    )


def _render_edition_index(
    config: Config,
    issues: list[Digest],
    views: dict[dt.date, tuple[render.PaperView, ...]],
    groups: list[render.TagGroup],
    edition: str,
) -> bytes:
    language = Edition(edition).language
    name = render.EDITION_NAMES[edition][0]
    # Most used tags first: they are the ones a reader browses by.
    by_use = sorted(groups, key=lambda group: (-len(group.papers), group.slug))
    return _render_page(
        config,
        "site/edition.html",
        page_lang=language,
        edition=edition,
        root="../",
        page_title=f"{name} · {config.site.title}",
        canonical=f"{config.site.base_url}{edition}/",
        feeds=_edition_feeds(config, edition),
        issues=[
            {
                "date_iso": digest.date.isoformat(),
                "date_text": _long_date(digest.date, language),
                "papers": views[digest.date],
            }
            for digest in issues
        ],
        tags=[group.view for group in by_use],
    )


def _render_tag_page(
    config: Config,
    group: render.TagGroup,
    views: dict[dt.date, tuple[render.PaperView, ...]],
    edition: str,
) -> bytes:
    language = Edition(edition).language
    tag = group.view
    tag_feed = FeedLink(
        "application/atom+xml",
        f"#{tag.name} · Atom",
        render.feed_url(config, edition, "atom", tag=group.name),
    )
    return _render_page(
        config,
        "site/tag.html",
        page_lang=language,
        edition=edition,
        root="../../../",
        page_title=f"#{tag.name} · {config.site.title}",
        canonical=render.tag_url(config, group.name, edition),
        feeds=[tag_feed, *_edition_feeds(config, edition)],
        tag=tag,
        count_text=render.paper_count(len(group.papers), language),
        papers=[
            {
                "date_iso": item.digest.date.isoformat(),
                "date_text": _long_date(item.digest.date, language),
                "paper": views[item.digest.date][item.index],
            }
            for item in group.papers
        ],
    )


def _render_landing(config: Config, issues: list[Digest]) -> bytes:
    language = config.site.language_default
    latest = issues[0] if issues else None
    cards = [
        {
            "edition": edition,
            "language": Edition(edition).language,
            "atom": render.feed_url(config, edition, "atom"),
            "rss": render.feed_url(config, edition, "rss"),
            "latest": latest
            and {
                "date_iso": latest.date.isoformat(),
                "date_text": _long_date(latest.date, Edition(edition).language),
            },
        }
        for edition in config.editions
    ]
    return _render_page(
        config,
        "site/index.html",
        page_lang=language,
        edition=None,
        root="",
        page_title=config.site.title,
        canonical=config.site.base_url,
        feeds=[link for edition in config.editions for link in _edition_feeds(config, edition)],
        cards=cards,
        subscribe_url=f"{config.server.public_url}subscribe",
    )


def _render_page(config: Config, template: str, **context: Any) -> bytes:
    """Render one page; the values every page's layout needs are added here."""
    env = render.environment(config)
    html = env.get_template(template).render(
        site=config.site,
        editions=[str(edition) for edition in config.editions],
        edition_names=render.EDITION_NAMES,
        labels=render.LABELS[context["page_lang"]],
        # The configured description has no language of its own: guess it.
        description_lang=render.text_language(config.site.description) or "en",
        **context,
    )
    return html.encode("utf-8")


def _edition_feeds(config: Config, edition: str) -> list[FeedLink]:
    name = render.EDITION_NAMES[edition][0]
    return [
        FeedLink("application/atom+xml", f"{name} · Atom", render.feed_url(config, edition)),
        FeedLink("application/rss+xml", f"{name} · RSS", render.feed_url(config, edition, "rss")),
    ]


@functools.lru_cache(maxsize=16384)
def _long_date(date: dt.date, language: str) -> str:
    # Babel takes ~40 µs a date; tag pages repeat each date many times.
    return render.format_date(date, language)


def _digest_on(issues: list[Digest], date: dt.date) -> Digest:
    for digest in issues:
        if digest.date == date:
            return digest
    raise NewsletterError(
        f"no digest dated {date.isoformat()} among the {len(issues)} given",
        hint="publish a date whose digest is in the digests folder and parses cleanly",
    )


# --- writing, the manifest and stale files -------------------------------------


class _Writer:
    """Writes files that changed (or, dry, only compares) and keeps the tally."""

    def __init__(self, public: Path, dry_run: bool) -> None:
        self.public = public
        self.dry_run = dry_run
        self.paths: set[str] = set()
        self.written: list[str] = []
        self.unchanged = 0

    def write_all(self, files: dict[str, bytes]) -> None:
        for relative in sorted(files):
            self.paths.add(relative)
            path, data = self.public / relative, files[relative]
            changed = _differs(path, data) if self.dry_run else write_if_changed(path, data)
            if changed:
                self.written.append(relative)
            else:
                self.unchanged += 1


def _differs(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() != data
    except FileNotFoundError:
        return True


@dataclass(frozen=True)
class BuildManifest:
    """What the last build generated, and when each feed item's text changed."""

    files: set[str]
    revisions: dict[str, Revision]


def read_manifest(public: Path) -> set[str]:
    """The files an earlier build generated; empty if none (or unreadable)."""
    return read_build_manifest(public).files


def read_build_manifest(public: Path) -> BuildManifest:
    """The last build's manifest; empty if there is none or it cannot be trusted
    (a bad entry is dropped: deleting nothing and marking an item changed are
    the safe answers)."""
    try:
        raw = json.loads((public / MANIFEST).read_text(encoding="utf-8"))
        files = raw["files"]
        items = raw.get("revisions", {})
        if not isinstance(files, list) or not isinstance(items, dict):
            raise TypeError("'files' must be a list and 'revisions' an object")
    except FileNotFoundError:
        return BuildManifest(set(), {})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring unreadable %s: %s", public / MANIFEST, exc)
        return BuildManifest(set(), {})
    paths = {path for path in files if isinstance(path, str) and _is_safe_relative(path)}
    revisions = {}
    for key, value in items.items():
        try:
            content, changed = value.split(" ")
            when = dt.datetime.fromisoformat(changed)
        except (AttributeError, ValueError):
            continue
        if when.tzinfo is not None:
            revisions[key] = Revision(content, when)
    return BuildManifest(paths, revisions)


def write_manifest(
    public: Path, paths: Iterable[str], revisions: dict[str, Revision] | None = None
) -> None:
    """Version 2: {"files": [path...], "revisions": {key: "HASH ISO-TIME"}}."""
    items = {key: f"{r.hash} {r.changed.isoformat()}" for key, r in (revisions or {}).items()}
    data = {"version": 2, "files": sorted(paths), "revisions": items}
    text = json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    write_if_changed(public / MANIFEST, text.encode("utf-8"))


def _is_safe_relative(path: str) -> bool:
    """Only plain paths inside public/: a tampered manifest must not reach out."""
    posix = PurePosixPath(path)
    return (
        bool(path)
        and not posix.is_absolute()
        and "\\" not in path
        and all(part not in ("", ".", "..") for part in path.split("/"))
        and path != MANIFEST
    )


def _delete_stale(public: Path, stale: list[str], dry_run: bool) -> list[str]:
    """Delete files we generated before and not now, then the folders they emptied."""
    deleted = []
    for relative in stale:
        path = public / relative
        if not path.is_file() or path.is_symlink():
            continue
        deleted.append(relative)
        if not dry_run:
            path.unlink()
            _remove_empty_parents(path.parent, public)
    return deleted


def _remove_empty_parents(folder: Path, public: Path) -> None:
    root = public.resolve()
    while folder.resolve() != root and root in folder.resolve().parents:
        try:
            folder.rmdir()  # fails, as it should, when the folder is not empty
        except OSError:
            return
        folder = folder.parent

"""Lists of issues and papers: each edition's index, tag pages, the tag index.

Lists are paginated with stable URLs. Pages are numbered from the oldest
(`E/page/1/` holds the first `site.page_size` issues ever published), so a
page keeps its URL and its content while newer issues arrive, and publishing
a day changes only the pages that list it: the front page (`E/index.html`,
the newest page_size issues), the numbered page it falls on, and the one
before that (whose "newer" link moves when a new page starts). Every list
shows the newest first and links to the newer and the older page. Tag pages
(`E/tags/TAG/`, `E/tags/TAG/page/K/`) do the same with papers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from markupsafe import Markup

from newsletter import render
from newsletter.model import Digest, Edition
from newsletter.outputs import Output, key_of
from newsletter.plurals import plural
from newsletter.site import paths
from newsletter.site.pages import SiteContext, edition_feeds, long_date, render_page, tag_feeds

TAG_COUNT = {
    "ko": {"other": "태그 {count}개"},
    "en": {"one": "{count} tag", "other": "{count} tags"},
}
TOP_TAGS = 20  # on an edition's front page; the tag index lists them all


@dataclass(frozen=True)
class Pagination:
    """`count` items, newest first, cut into pages of `size` counted from the oldest."""

    count: int
    size: int

    @property
    def last(self) -> int:
        """The newest page's number (0 when there are no items)."""
        return -(-self.count // self.size)

    def number_of(self, newest_index: int) -> int:
        """The page holding the item at this position of the newest-first list."""
        return (self.count - 1 - newest_index) // self.size + 1

    def bounds(self, number: int) -> tuple[int, int]:
        """[start, stop) of page `number` in the newest-first list."""
        return self.count - min(number * self.size, self.count), self.count - (
            number - 1
        ) * self.size

    @property
    def numbered(self) -> range:
        """The numbered pages: none while the front page holds every item."""
        return range(1, self.last + 1) if self.count > self.size else range(0)

    @property
    def front_older(self) -> int | None:
        """The page an edition's front page (the newest `size`) links to as older."""
        return self.number_of(self.size) if self.count > self.size else None

    def near(self, newest_indexes: list[int]) -> set[int]:
        """The pages whose content or links change when these items are new:
        each one's page and the page before it."""
        numbers = {self.number_of(i) for i in newest_indexes}
        return {n for number in numbers for n in (number, number - 1) if n >= 1}


@dataclass(frozen=True)
class TagEntry:
    """A tag with its paper count, for the tag index and top tags."""

    name: str
    slug: str
    href: str
    language: str | None
    count: int


class Views:
    """Each digest's papers as an edition shows them, made once per build."""

    def __init__(self, edition: str, digest_key: Callable[[Digest], str]) -> None:
        self.edition = edition
        self.key = digest_key
        self._tagged: dict[tuple[dt.date, int, str], Markup] = {}

    def __call__(self, digest: Digest) -> tuple[render.PaperView, ...]:
        return render.paper_views(digest, self.edition)

    def tagged_html(self, site: SiteContext, item: render.TaggedPaper, edition_root: str) -> Markup:
        """A paper's entry in tag lists (templates/site/_tagged.html), rendered
        once per page depth: a paper is on the pages of each of its tags."""
        key = (item.digest.date, item.index, edition_root)
        if key not in self._tagged:
            language = Edition(self.edition).language
            html = site.environment.get_template("site/_tagged.html").render(
                page_lang=language,
                edition_root=edition_root,
                index_file="index.html" if site.config.site.relative_urls else "",
                date_iso=item.digest.date.isoformat(),
                date_text=long_date(item.digest.date, language),
                paper=self(item.digest)[item.index],
            )
            self._tagged[key] = Markup(html)
        return self._tagged[key]


# --- edition indexes ------------------------------------------------------------------


def edition_outputs(
    site: SiteContext,
    edition: str,
    issues: list[Digest],
    groups: list[render.TagGroup],
    views: Views,
    env: str,
    pages: set[int] | None,
) -> Iterator[Output]:
    """The edition's front page and its numbered pages (`pages`: which ones;
    None for all), each keyed by what it lists."""
    paging = Pagination(len(issues), site.config.site.page_size)
    top = tag_entries(groups, by_use=True)[:TOP_TAGS]
    window = issues[: paging.size]
    yield Output(
        paths.edition_index_path(edition),
        key_of(env, "front", edition, [views.key(d) for d in window], paging.front_older, top),
        lambda: _edition_page(site, edition, window, views, None, paging, top),
        pure=True,
    )
    for number in sorted(pages) if pages is not None else paging.numbered:
        if number not in paging.numbered:
            continue
        start, stop = paging.bounds(number)
        listed = issues[start:stop]
        yield Output(
            paths.edition_index_path(edition, number),
            key_of(
                env, "page", edition, number, number < paging.last, [views.key(d) for d in listed]
            ),
            lambda number=number, listed=listed: _edition_page(
                site, edition, listed, views, number, paging, ()
            ),
            pure=True,
        )


def _edition_page(
    site: SiteContext,
    edition: str,
    listed: list[Digest],
    views: Views,
    number: int | None,
    paging: Pagination,
    top: tuple[TagEntry, ...] | list[TagEntry],
) -> bytes:
    config = site.config
    language = Edition(edition).language
    name = render.EDITION_NAMES[edition][0]
    index_file = "index.html" if config.site.relative_urls else ""
    path = paths.edition_index_path(edition, number)
    newer, older = _neighbours(number, paging, index_file)
    range_text = _range(listed, language)
    return render_page(
        site,
        "site/edition.html",
        path,
        edition=edition,
        page_lang=language,
        page_title=f"{name} · {range_text + ' · ' if number else ''}{config.site.title}",
        canonical=paths.page_url(config, path),
        feeds=edition_feeds(config, edition),
        page_number=number,
        range_text=range_text,
        up=f"../../{index_file}",
        prefix="" if number is None else "../../",
        newer=newer,
        older=older,
        issues=[
            {
                "date_iso": digest.date.isoformat(),
                "date_text": long_date(digest.date, language),
                "papers": views(digest),
            }
            for digest in listed
        ],
        tags=top,
    )


def _neighbours(
    number: int | None, paging: Pagination, index_file: str
) -> tuple[str | None, str | None]:
    """(newer, older) links of the front page (number None) or page `number`."""
    if number is None:
        older = paging.front_older
        return None, (f"page/{older}/{index_file}" if older else None)
    newer = f"../{number + 1}/{index_file}" if number < paging.last else f"../../{index_file}"
    older = f"../{number - 1}/{index_file}" if number > 1 else None
    return newer, older


def _range(listed: list[Digest], language: str) -> str:
    if not listed:
        return ""
    newest, oldest = listed[0].date, listed[-1].date
    if newest == oldest:
        return long_date(newest, language)
    return f"{long_date(oldest, language)} – {long_date(newest, language)}"


# --- tags --------------------------------------------------------------------------------


def tag_entries(groups: list[render.TagGroup], *, by_use: bool = False) -> list[TagEntry]:
    """Every tag with its count: by folder name, or most used first."""
    entries = [
        TagEntry(g.name, g.slug, g.view.href, g.view.language, len(g.papers)) for g in groups
    ]
    if by_use:
        entries.sort(key=lambda entry: (-entry.count, entry.slug))
    return entries


def tag_index_output(
    site: SiteContext, edition: str, groups: list[render.TagGroup], env: str
) -> Output:
    """`E/tags/`: every tag of the edition with its number of papers."""
    entries = tag_entries(groups)
    path = paths.tag_index_path(edition)

    def page() -> bytes:
        config = site.config
        language = Edition(edition).language
        labels = render.LABELS[language]
        return render_page(
            site,
            "site/tags.html",
            path,
            edition=edition,
            page_lang=language,
            page_title=f"{labels['all_tags']} · {render.EDITION_NAMES[edition][0]} · "
            f"{config.site.title}",
            canonical=paths.page_url(config, path),
            feeds=edition_feeds(config, edition),
            count_text=plural(len(entries), language, **TAG_COUNT[language]),
            tags=entries,
        )

    return Output(path, key_of(env, "tags", edition, entries), page, pure=True)


def tag_outputs(
    site: SiteContext,
    edition: str,
    group: render.TagGroup,
    views: Views,
    env: str,
    pages: set[int] | None,
) -> Iterator[Output]:
    """One tag's front page (its newest papers) and numbered pages."""
    paging = Pagination(len(group.papers), site.config.site.page_size)
    window = group.papers[: paging.size]

    def listed_key(items: tuple[render.TaggedPaper, ...]) -> list[tuple[str, int]]:
        return [(views.key(item.digest), item.index) for item in items]

    yield Output(
        paths.tag_page_path(edition, group.name),
        key_of(
            env,
            "tag",
            edition,
            group.slug,
            group.name,
            paging.count,
            paging.front_older,
            listed_key(window),
        ),
        lambda: _tag_page(site, edition, group, window, views, None, paging),
        pure=True,
    )
    for number in sorted(pages) if pages is not None else paging.numbered:
        if number not in paging.numbered:
            continue
        start, stop = paging.bounds(number)
        listed = group.papers[start:stop]
        yield Output(
            paths.tag_page_path(edition, group.name, number),
            key_of(
                env,
                "tagpage",
                edition,
                group.slug,
                group.name,
                number,
                number < paging.last,
                listed_key(listed),
            ),
            lambda number=number, listed=listed: _tag_page(
                site, edition, group, listed, views, number, paging
            ),
            pure=True,
            day=listed[0].digest.date if listed else None,
        )


def _tag_page(
    site: SiteContext,
    edition: str,
    group: render.TagGroup,
    listed: tuple[render.TaggedPaper, ...],
    views: Views,
    number: int | None,
    paging: Pagination,
) -> bytes:
    config = site.config
    language = Edition(edition).language
    tag = group.view
    index_file = "index.html" if config.site.relative_urls else ""
    path = paths.tag_page_path(edition, group.name, number)
    newer, older = _neighbours(number, paging, index_file)
    range_text = _range([item.digest for item in listed], language) if number else ""
    edition_root = "../../" if number is None else "../../../../"
    return render_page(
        site,
        "site/tag.html",
        path,
        edition=edition,
        page_lang=language,
        page_title=f"#{tag.name} · {range_text + ' · ' if number else ''}{config.site.title}",
        canonical=paths.page_url(config, path),
        feeds=tag_feeds(config, edition, group.name),
        tag=tag,
        edition_root=edition_root,
        range_text=range_text,
        count_text=render.paper_count(paging.count, language),
        newer=newer,
        older=older,
        papers=[views.tagged_html(site, item, edition_root) for item in listed],
    )

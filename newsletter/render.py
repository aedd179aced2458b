"""What pages, feeds and emails show of a digest: views, names, URLs, and the
template functions and filters (the environment is newsletter.templating).

Digest text is data: autoescape is on for every template, and text reaches
templates only through values (never as template source). URLs in text become
links via `linkify` (newsletter.text), which escapes everything else.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from markupsafe import Markup

from newsletter.model import HANGUL
from newsletter.plurals import plural
from newsletter.text import wrap

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.model import Digest, Entry, Week
    from newsletter.papers.links import PaperLink


def counted(count: int | str, language: str, one: str = "", other: str = "") -> str:
    """Jinja filter: `{{ days|counted("en", "{count} day", "{count} days") }}`.

    The plural form by CLDR rules (newsletter.plurals); `one` may be left out
    for languages without it (Korean).
    """
    forms = {"other": other} | ({"one": one} if one else {})
    return plural(int(count), language, **forms)


def wrap_lines(text: str, width: int = 76) -> str:
    """Jinja filter `|wrap`: text as lines of at most `width` columns
    (`newsletter.text.wrap`: URLs never broken), joined by newlines."""
    return _wrapped(str(text), width)


@functools.lru_cache(maxsize=4096)
def _wrapped(text: str, width: int) -> str:
    # Remembered: the variants of a send (editions, readers' topics, steps of
    # the size guard) wrap the same paragraphs again and again.
    return "\n".join(wrap(text, width))


def format_date(date: dt.date, language: str) -> str:
    """'2025년 4월 4일' for ko, 'April 4, 2025' for en."""
    from babel.dates import format_date as babel_format_date

    return babel_format_date(date, "long", locale="ko" if language == "ko" else "en")


def lang_attribute(code: str | None, page_lang: str) -> Markup:
    """Template filter `code|lang(page_lang)` (and global `lang(code,
    page_lang)`, for templates of earlier versions): ` lang="CODE"` when text in
    `code` sits on a page in another language (WCAG 3.1.2), else nothing. A
    function, not a macro: pages call it for every title and comment."""
    if code and code != page_lang:
        return _lang_markup(code)
    return _NO_MARKUP


@functools.lru_cache(maxsize=64)
def edition_name(edition: str, page_lang: str) -> Markup:
    """Template global: an edition's name, marked with its language when that
    differs from the page's (`<span lang="en">English</span>` on a Korean page)."""
    name, code = EDITION_NAMES[edition]
    if code and code != page_lang:
        return Markup('<span lang="{}">{}</span>').format(code, name)
    return Markup("{}").format(name)


# Markup("") once: pages ask for a lang attribute for every title and comment,
# and most are in the page's language (a Markup is built in Python).
_NO_MARKUP = Markup("")


@functools.lru_cache(maxsize=64)
def _lang_markup(code: str) -> Markup:
    return Markup(' lang="{}"').format(code)


def issue_url(config: Config, date: dt.date, edition: str) -> str:
    """The archive page of one issue in one edition (public/E/YYYY-MM-DD/)."""
    return f"{config.site.base_url}{edition}/{date.isoformat()}/"


def weekly_url(config: Config, week: Week, edition: str) -> str:
    """The archive page of one weekly issue in one edition (public/E/weekly/2025-W15/)."""
    return f"{config.site.base_url}{edition}/weekly/{week.isoformat()}/"


def format_span(first: dt.date, last: dt.date, language: str) -> str:
    """The days of a weekly issue: '2025년 4월 7일~13일', 'Apr 7 – 13, 2025' (CLDR)."""
    from babel.dates import format_interval

    return format_interval(first, last, "yMMMMd", locale="ko" if language == "ko" else "en")


# --- names shared by pages, feeds and emails (appended for site/feeds) ---------

# Tag names may hold any letter, digits, '_', '-' and '.'; anything else (which
# the parser never lets through, but a library user might) becomes '-'.
_UNSAFE_IN_TAG = re.compile(r"[^\w.\-]+")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def _short_hash(text: str, length: int = 8) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


@functools.lru_cache(maxsize=65536)
def paper_anchor(title: str) -> str:
    """A stable HTML id for a paper: an ASCII slug of its title plus a short hash.

    The hash is of the whole (NFC) title, so two titles that slug alike still
    get different ids, and the id never changes while the title does not.
    """
    import unicodedata

    title = unicodedata.normalize("NFC", title.strip())
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("-", ascii_title.lower()).strip("-")[:48].rstrip("-")
    return f"{slug or 'paper'}-{_short_hash(title)}"


def paper_anchors(titles: list[str] | tuple[str, ...]) -> list[str]:
    """paper_anchor for each title of one issue; a repeated title gets -2, -3..."""
    seen: dict[str, int] = {}
    anchors = []
    for title in titles:
        anchor = paper_anchor(title)
        seen[anchor] = seen.get(anchor, 0) + 1
        anchors.append(anchor if seen[anchor] == 1 else f"{anchor}-{seen[anchor]}")
    return anchors


@functools.lru_cache(maxsize=65536)
def tag_slug(tag: str) -> str:
    """A safe folder name for a tag: Hangul kept, lower case, never hidden or '..'.

    Tags that differ only in case share a folder (and a page): case-insensitive
    file systems (macOS, Windows) could not hold both anyway.
    """
    import unicodedata

    name = _UNSAFE_IN_TAG.sub("-", unicodedata.normalize("NFC", tag).lower()) or "-"
    if name.startswith("."):
        name = "_" + name  # '.', '..' and '.net' would be special or hidden
    if len(name.encode("utf-8")) > 120:  # file names are limited to 255 bytes
        name = f"{name[:30]}-{_short_hash(name)}"
    return name


def tag_href(tag: str) -> str:
    """The URL path segment of a tag's folder (percent-encoded UTF-8)."""
    from urllib.parse import quote

    return quote(tag_slug(tag), safe="")


def tag_url(config: Config, tag: str, edition: str) -> str:
    """The archive page listing a tag's papers in one edition."""
    return f"{config.site.base_url}{edition}/tags/{tag_href(tag)}/"


def feed_url(config: Config, edition: str, kind: str = "atom", tag: str | None = None) -> str:
    """Where an edition's (or an edition's tag's) feed is published; kind:
    atom (atom.xml), rss (rss.xml) or json (feed.json, JSON Feed 1.1)."""
    folder = f"feeds/{edition}/" + (f"tags/{tag_href(tag)}/" if tag is not None else "")
    return f"{config.site.base_url}{folder}{FEED_FILES[kind]}"


FEED_FILES = {"atom": "atom.xml", "rss": "rss.xml", "json": "feed.json"}


# "Weekly" in page and feed titles, by language.
WEEKLY_LABELS = {"ko": "주간", "en": "Weekly"}


def weekly_feed_url(config: Config, edition: str, kind: str = "atom") -> str:
    """feeds/E/weekly/atom.xml (rss.xml, feed.json): one item per weekly issue."""
    return f"{config.site.base_url}feeds/{edition}/weekly/{FEED_FILES[kind]}"


# --- an edition's view of a digest: neutral values for pages and feeds ---------


# Words of the pages and feeds, by page language; the templates choose layout.
LABELS: dict[str, dict[str, str]] = {
    "ko": {
        "subscribe": "이메일로 받아보기 (구독)",
        "abstract": "초록",
        "comment": "코멘트",
        "tags": "태그",
        "contents": "차례",
        "issues": "발행 목록",
        "latest": "최신 호",
        "feeds": "피드",
        "editions": "판",
        "other_editions": "다른 판",
        "all_tags": "모든 태그",
        "top_tags": "많이 쓰인 태그",
        "tagged": "태그 #{tag}",
        "search": "검색",
        "search_offline": "검색은 웹 서버에 올린 사이트에서 됩니다 (파일로 열면 안 됩니다).",
        "search_script": "검색에는 자바스크립트가 필요합니다.",
        "pages": "쪽",
        "newer": "최근 글",
        "older": "이전 글",
        "opml": "모든 피드 (OPML)",
        "permalink": "이 논문의 고정 링크",
    },
    "en": {
        "subscribe": "Get it by email (subscribe)",
        "abstract": "Abstract",
        "comment": "Comment",
        "tags": "Tags",
        "contents": "Contents",
        "issues": "Issues",
        "latest": "Latest issue",
        "feeds": "Feeds",
        "editions": "Editions",
        "other_editions": "Other editions",
        "all_tags": "All tags",
        "top_tags": "Most used tags",
        "tagged": "Tagged #{tag}",
        "search": "Search",
        "search_offline": "Search works when the site is served by a web server, not opened from files.",
        "search_script": "Search needs JavaScript.",
        "pages": "Pages",
        "newer": "Newer",
        "older": "Older",
        "opml": "All feeds (OPML)",
        "permalink": "Permalink to this paper",
    },
}

# Each edition's name and the language that name is written in (None: mixed).
EDITION_NAMES: dict[str, tuple[str, str | None]] = {
    "ko": ("한국어", "ko"),
    "en": ("English", "en"),
    "both": ("한국어 + English", None),
}


def text_language(text: str) -> str | None:
    """'ko' for text with Hangul; None when it cannot be told (tags, names)."""
    return "ko" if HANGUL.search(text) else None


# How pages and feeds count papers, by CLDR plural category (newsletter.plurals).
PAPER_COUNT: dict[str, dict[str, str]] = {
    "ko": {"other": "논문 {count}편"},
    "en": {"one": "{count} paper", "other": "{count} papers"},
}


def paper_count(count: int, language: str) -> str:
    """'논문 3편' / '3 papers' / '1 paper', by the language's plural rules."""
    language = "ko" if language == "ko" else "en"
    return plural(count, language, **PAPER_COUNT[language])


# The views' reprs are what newsletter.revisions hashes (and build manifests
# keep): each class writes the repr @dataclass would make, without its guard
# against recursion, which took a tenth of a full build's planning.


@dataclass(frozen=True)
class CommentView:
    language: str  # "ko" or "en"
    text: str

    def __repr__(self) -> str:
        return f"CommentView(language={self.language!r}, text={self.text!r})"


@dataclass(frozen=True)
class TagView:
    name: str
    slug: str  # the folder name (Hangul kept)
    href: str  # the folder name percent-encoded, for URLs
    language: str | None

    def __repr__(self) -> str:
        return (
            f"TagView(name={self.name!r}, slug={self.slug!r}, href={self.href!r}, "
            f"language={self.language!r})"
        )


@dataclass(frozen=True)
class PaperView:
    """One paper as an edition shows it.

    `link`: where the paper can be read (newsletter.papers), or None. It is
    left out of the repr, which feed revisions hash (newsletter.revisions):
    a link that arrives later is not a correction of the text.
    """

    anchor: str
    title: str
    authors: str
    abstract: str
    comments: tuple[CommentView, ...]
    tags: tuple[TagView, ...]
    link: PaperLink | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"PaperView(anchor={self.anchor!r}, title={self.title!r}, "
            f"authors={self.authors!r}, abstract={self.abstract!r}, "
            f"comments={self.comments!r}, tags={self.tags!r})"
        )


def edition_comments(entry: Entry, edition: str) -> tuple[CommentView, ...]:
    """The comments an edition shows; a missing one falls back to the other language."""
    korean = CommentView("ko", entry.comment_ko) if entry.comment_ko else None
    english = CommentView("en", entry.comment_en) if entry.comment_en else None
    if edition == "both":
        chosen = (korean, english)
    elif edition == "ko":
        chosen = (korean or english,)
    else:
        chosen = (english or korean,)
    return tuple(comment for comment in chosen if comment is not None)


@functools.lru_cache(maxsize=65536)
def tag_view(tag: str) -> TagView:
    return TagView(tag, tag_slug(tag), tag_href(tag), text_language(tag))


# paper_views by (id(digest), edition), with the digest itself so that an id
# reused by another object is never mistaken for it; cleared when it grows.
_VIEWS: dict[tuple[int, str], tuple[Digest, tuple[PaperView, ...]]] = {}
_VIEWS_LIMIT = 50_000


def paper_views(digest: Digest, edition: str) -> tuple[PaperView, ...]:
    """Every paper of a digest as one edition shows it, with its stable anchor.

    Remembered per digest object and edition: a build asks for each many
    times (its page, lists, feeds, sitemaps, search)."""
    key = (id(digest), edition)
    hit = _VIEWS.get(key)
    if hit is not None and hit[0] is digest:
        return hit[1]
    if len(_VIEWS) >= _VIEWS_LIMIT:
        _VIEWS.clear()
    views = _paper_views(digest, edition)
    _VIEWS[key] = (digest, views)
    return views


def _paper_views(digest: Digest, edition: str) -> tuple[PaperView, ...]:
    anchors = paper_anchors([entry.title for entry in digest.entries])
    return tuple(
        PaperView(
            anchor=anchor,
            title=entry.title,
            authors=", ".join(entry.authors),
            abstract=entry.abstract,
            comments=edition_comments(entry, edition),
            tags=tuple(tag_view(tag) for tag in _tags_by_slug(entry.tags).values()),
            link=digest.link(index),
        )
        for index, (anchor, entry) in enumerate(zip(anchors, digest.entries, strict=True))
    )


class TaggedPaper(NamedTuple):
    """A paper of a tag's list (a NamedTuple: a build makes one per paper and tag)."""

    digest: Digest
    index: int  # position of the paper in its digest (indexes its paper_views)


@dataclass(frozen=True)
class TagGroup:
    """A tag's papers across issues, newest issue first; tags equal up to case merge."""

    slug: str
    name: str
    papers: tuple[TaggedPaper, ...]

    @property
    def view(self) -> TagView:
        return tag_view(self.name)


def tag_groups(digests: list[Digest] | tuple[Digest, ...]) -> list[TagGroup]:
    """Every tag of the digests with its papers, newest first; sorted by folder name."""
    names: dict[str, str] = {}
    papers: dict[str, list[TaggedPaper]] = {}
    for digest in sorted(digests, key=lambda d: d.date, reverse=True):
        for index, entry in enumerate(digest.entries):
            slugs = _entry_slugs(entry.tags)
            for slug, tag in slugs:
                if slug not in names:
                    names[slug] = tag  # the newest spelling names the page
                    papers[slug] = []
                papers[slug].append(TaggedPaper(digest, index))
    return [TagGroup(slug, names[slug], tuple(papers[slug])) for slug in sorted(papers)]


@functools.lru_cache(maxsize=65536)
def _entry_slugs(tags: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(slug, tag) once per slug, first spelling kept; cached per tag tuple."""
    return tuple(_tags_by_slug(tags).items())


def _tags_by_slug(tags: tuple[str, ...]) -> dict[str, str]:
    """One tag per folder name, first spelling kept (#LLM #llm is one tag)."""
    unique: dict[str, str] = {}
    for tag in tags:
        unique.setdefault(tag_slug(tag), tag)
    return unique

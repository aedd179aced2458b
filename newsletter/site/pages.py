"""Rendering one page: the layout every page shares, issue pages, the landing
page and each edition's search page.

An issue page depends only on its own digest (and the config), so publishing a
new day never rewrites older issues' pages. Links between pages are relative
(the site works wherever it is served; with site.relative_urls they name
index.html, so pages opened from disk navigate too); canonical, Open Graph and
feed links are absolute, because they are for readers elsewhere.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from newsletter import render
from newsletter.model import Digest, Edition
from newsletter.site import paths

if TYPE_CHECKING:
    from newsletter.config import Config

# Open Graph locales (https://ogp.me/#optional) by page language.
OG_LOCALES = {"ko": "ko_KR", "en": "en_US"}
# Open Graph descriptions: platforms show about this many characters.
DESCRIPTION_LIMIT = 200


@dataclass(frozen=True)
class FeedLink:
    """A feed for <link rel="alternate"> autodiscovery and the footer."""

    type: str
    title: str
    href: str


@dataclass(frozen=True)
class SiteContext:
    """What every page of one build shares: the config, whether pages get a
    search box (search on and Pagefind able to run), and the build's
    fingerprint of its templates (outputs.environment_key; "" for none: the
    templates' files are checked for changes at each use)."""

    config: Config
    search: bool = False
    version: str = ""

    @functools.cached_property
    def environment(self) -> Any:
        """The Jinja2 environment of this config (templating.environment), looked up once."""
        from newsletter import templating

        return templating.environment(self.config, version=self.version)

    @functools.cached_property
    def shares_papers(self) -> bool:
        """Whether pages may share each issue's papers' HTML (papers_html):
        only with the built-in site/_papers.html and site/_paper.html, whose
        values are known; an overridden one may use anything of its page."""
        return self.builtin("site/_papers.html") and self.builtin("site/_paper.html")

    def builtin(self, name: str) -> bool:
        """Whether template `name` is the built-in one (not overridden in paths.templates)."""
        known = self._builtin
        if name not in known:
            from pathlib import Path

            from newsletter.templating import builtin_templates

            filename = self.environment.get_template(name).filename
            folder = builtin_templates().resolve()
            known[name] = filename is not None and folder in Path(filename).resolve().parents
        return known[name]

    @functools.cached_property
    def _builtin(self) -> dict[str, bool]:
        return {}

    def splices(self, page: str) -> list[bytes] | None:
        """Where papers_html puts the papers' bytes for a page of template
        `page`: a list that render_page splices into the page, when the page
        and its layout are the built-in ones (which write papers_html as it
        is); None, for the HTML itself, when a template that may filter it
        (`|striptags`, `|length`) is overridden."""
        return [] if self.builtin(page) and self.builtin("site/base.html") else None

    @functools.cached_property
    def papers_cache(self) -> dict[tuple[str, dt.date], bytes | None]:
        """papers_html's memory: (edition, date) -> the papers' HTML (UTF-8) with slots."""
        return {}


def render_page(
    site: SiteContext,
    template: str,
    path: str,
    *,
    edition: str | None,
    splices: list[bytes] | None = None,
    **context: Any,
) -> bytes:
    """Render the page that lives at `path`; the layout's values are added here.

    context needs page_lang, page_title, canonical and feeds; it may override
    description (default: site.description) and give og (Open Graph values).
    splices: bytes that papers_html put in the context as placeholders, put
    in the page's bytes here (wherever the template wrote them).
    """
    config = site.config
    index_file = "index.html" if config.site.relative_urls else ""
    root = paths.depth_root(path)
    search_url = None
    if site.search and edition is not None and path != paths.search_page_path(edition):
        search_url = f"{root}{edition}/search/{index_file}"
    context.setdefault("description", config.site.description)
    context.setdefault("og", None)
    context.setdefault("newer", None)
    context.setdefault("older", None)
    html = site.environment.get_template(template).render(
        site=config.site,
        editions=[str(e) for e in config.editions],
        edition_names=render.EDITION_NAMES,
        labels=render.LABELS[context["page_lang"]],
        # The configured description has no language of its own: guess it.
        description_lang=render.text_language(config.site.description) or "en",
        edition=edition,
        root=root,
        index_file=index_file,
        search_url=search_url,
        **context,
    )
    data = html.encode("utf-8")
    return _splice(data, splices) if splices else data


def edition_feeds(config: Config, edition: str) -> list[FeedLink]:
    """An edition's feeds, for autodiscovery: Atom, RSS and JSON Feed."""
    name = render.EDITION_NAMES[edition][0]
    return [
        FeedLink("application/atom+xml", f"{name} · Atom", render.feed_url(config, edition)),
        FeedLink("application/rss+xml", f"{name} · RSS", render.feed_url(config, edition, "rss")),
        FeedLink(
            "application/feed+json",
            f"{name} · JSON Feed",
            render.feed_url(config, edition, "json"),
        ),
    ]


def tag_feeds(config: Config, edition: str, tag: str) -> list[FeedLink]:
    """A tag's feeds in one edition (Atom and JSON Feed), then the edition's."""
    return [
        FeedLink(
            "application/atom+xml", f"#{tag} · Atom", render.feed_url(config, edition, tag=tag)
        ),
        FeedLink(
            "application/feed+json",
            f"#{tag} · JSON Feed",
            render.feed_url(config, edition, "json", tag=tag),
        ),
        *edition_feeds(config, edition),
    ]


@functools.lru_cache(maxsize=16384)
def long_date(date: dt.date, language: str) -> str:
    """render.format_date, remembered: Babel takes ~40 µs a date, and lists
    repeat each date many times."""
    return render.format_date(date, language)


# --- papers, as issue pages and weekly pages show them ------------------------------

# Slots in an issue's remembered HTML: where a paper id's prefix goes (weekly
# pages write DATE-ANCHOR) and the relative path of the tag folder. Control
# characters: the digest parser removes them from all text (digest.py).
_ID_SLOT = "\x00"
_TAGS_SLOT = "\x01"
_ID_SLOT_BYTES = _ID_SLOT.encode()
_TAGS_SLOT_BYTES = _TAGS_SLOT.encode()
_REMEMBERED = 64  # issues whose papers' HTML a process keeps
# The start of splice_mark's placeholders (STX, a nonce; ETX ends each).
_SPLICE_MARK = f"\x02{secrets.token_hex(8)}:"
_SPLICE_MARK_BYTES = _SPLICE_MARK.encode()


def papers_html(
    site: SiteContext,
    digest: Digest,
    edition: str,
    splices: list[bytes] | None,
    *,
    tag_prefix: str,
    id_prefix: str = "",
) -> Markup | None:
    """The papers of `digest` as templates/site/_papers.html shows them in
    `edition` (each through site/_paper.html): the issue page (tag_prefix
    "../tags/") and the weekly page ("../../tags/", ids prefixed with "DATE-")
    show the same HTML, rendered once per process and kept, encoded, for the
    last _REMEMBERED digests (pages are rendered in runs of neighbouring days,
    so a week's page finds its days' papers there). The page gets a
    placeholder (`splice_mark`), and the HTML's UTF-8 goes to `splices`:
    render_page puts it into the page's bytes, so the page's text neither
    copies nor encodes it again (splices None: the HTML itself, for a page
    whose template is overridden: SiteContext.splices). None when the papers'
    templates are overridden (SiteContext.shares_papers): the page includes
    them itself."""
    if not site.shares_papers:
        return None
    key = (edition, digest.date)
    cache = site.papers_cache
    if key not in cache:
        if len(cache) >= _REMEMBERED:
            del cache[next(iter(cache))]
        slots = None if _has_slots(digest) else _render_papers(site, digest, edition)
        cache[key] = None if slots is None else slots.encode("utf-8")
    html = cache[key]
    if html is None:  # text with a slot's character (not from the parser): no slots
        data = _render_papers(site, digest, edition, id_prefix, tag_prefix).encode("utf-8")
    else:
        data = html.replace(_ID_SLOT_BYTES, id_prefix.encode()).replace(
            _TAGS_SLOT_BYTES, tag_prefix.encode()
        )
    if splices is None:
        return Markup(data.decode("utf-8"))
    splices.append(data)
    return Markup(splice_mark(len(splices) - 1))


def splice_mark(index: int) -> str:
    """The placeholder of splices[index] in a page (render_page): a nonce
    drawn when this program starts, which no digest or config can hold."""
    return f"{_SPLICE_MARK}{index}\x03"


def _splice(data: bytes, splices: list[bytes]) -> bytes:
    """The page's bytes with each placeholder replaced by its splice."""
    parts = data.split(_SPLICE_MARK_BYTES)
    out = [parts[0]]
    for part in parts[1:]:
        index, _, rest = part.partition(b"\x03")
        out += (splices[int(index)], rest)
    return b"".join(out)


def _render_papers(
    site: SiteContext,
    digest: Digest,
    edition: str,
    id_prefix: str = _ID_SLOT,
    tag_prefix: str = _TAGS_SLOT,
) -> str:
    import dataclasses

    from newsletter.templating import PAPERS_INLINE

    language = Edition(edition).language
    return site.environment.get_template(PAPERS_INLINE).render(
        papers=[
            dataclasses.replace(p, anchor=f"{id_prefix}{p.anchor}")
            for p in render.paper_views(digest, edition)
        ],
        page_lang=language,
        edition=edition,
        edition_names=render.EDITION_NAMES,
        labels=render.LABELS[language],
        index_file="index.html" if site.config.site.relative_urls else "",
        tag_prefix=tag_prefix,
    )


def _has_slots(digest: Digest) -> bool:
    """Whether any text of the digest (entries and links) holds a slot's character."""
    texts = [
        text
        for entry in digest.entries
        for text in (entry.title, entry.abstract, entry.comment_ko, entry.comment_en)
    ]
    texts += [part for entry in digest.entries for part in (*entry.authors, *entry.tags)]
    texts += [part or "" for link in digest.links if link for part in (link.url, link.category)]
    joined = "".join(texts)
    return _ID_SLOT in joined or _TAGS_SLOT in joined


# --- issue pages -------------------------------------------------------------------


def issue_page(site: SiteContext, digest: Digest, edition: str) -> bytes:
    """One issue in one edition, with its Open Graph and Twitter card tags."""
    config = site.config
    language = Edition(edition).language
    papers = render.paper_views(digest, edition)
    others = [{"edition": other} for other in config.editions if other != edition]
    title = f"{long_date(digest.date, language)} · {config.site.title}"
    description = first_comment(papers) or config.site.description
    og = {
        "type": "article",
        "title": title,
        "description": description,
        "locale": OG_LOCALES[language],
        "published": _published(config, digest.date),
        "tags": [tag.name for tag in _issue_tags(papers)],
    }
    splices = site.splices("site/issue.html")
    return render_page(
        site,
        "site/issue.html",
        paths.issue_path(edition, digest.date),
        edition=edition,
        page_lang=language,
        page_title=title,
        canonical=render.issue_url(config, digest.date, edition),
        feeds=edition_feeds(config, edition),
        description=description,
        og=og,
        date_iso=digest.date.isoformat(),
        date_text=long_date(digest.date, language),
        count_text=render.paper_count(len(papers), language),
        papers=papers,
        papers_html=papers_html(site, digest, edition, splices, tag_prefix="../tags/"),
        other_editions=others,
        splices=splices,
    )


def first_comment(papers: tuple[render.PaperView, ...]) -> str:
    """The issue's first comment as the edition shows it, shortened for a
    description (Open Graph, Twitter card, <meta name=description>)."""
    from newsletter.text import shorten

    for paper in papers:
        for comment in paper.comments:
            return str(shorten(" ".join(comment.text.split()), DESCRIPTION_LIMIT))
    return ""


def _issue_tags(papers: tuple[render.PaperView, ...]) -> list[render.TagView]:
    seen: dict[str, render.TagView] = {}
    for paper in papers:
        for tag in paper.tags:
            seen.setdefault(tag.slug, tag)
    return list(seen.values())


def _published(config: Config, date: dt.date) -> str:
    return dt.datetime.combine(date, dt.time(0, 0), tzinfo=config.site.tz).isoformat()


# --- the landing page and search pages ---------------------------------------------


def landing_page(site: SiteContext, latest: Digest | None) -> bytes:
    """The site's front page: each edition with its latest issue and feeds."""
    config = site.config
    cards = [
        {
            "edition": edition,
            "language": Edition(edition).language,
            "atom": render.feed_url(config, edition, "atom"),
            "rss": render.feed_url(config, edition, "rss"),
            "json": render.feed_url(config, edition, "json"),
            "latest": latest
            and {
                "date_iso": latest.date.isoformat(),
                "date_text": long_date(latest.date, Edition(edition).language),
            },
        }
        for edition in config.editions
    ]
    return render_page(
        site,
        "site/index.html",
        "index.html",
        edition=None,
        page_lang=config.site.language_default,
        page_title=config.site.title,
        canonical=config.site.base_url,
        feeds=[link for edition in config.editions for link in edition_feeds(config, edition)],
        cards=cards,
        subscribe_url=f"{config.server.public_url}subscribe",
        opml_url=f"{config.site.base_url}feeds.opml",
    )


def search_page(site: SiteContext, edition: str) -> bytes:
    """An edition's search page: Pagefind's UI over that edition's index
    (newsletter.site.search), reading the query from `?q=`."""
    from newsletter.site.search import PARTICLE_PATTERN, bundle_folder

    config = site.config
    language = Edition(edition).language
    name = render.EDITION_NAMES[edition][0]
    path = paths.search_page_path(edition)
    return render_page(
        site,
        "site/search.html",
        path,
        edition=edition,
        page_lang=language,
        page_title=f"{render.LABELS[language]['search']} · {name} · {config.site.title}",
        canonical=paths.page_url(config, path),
        feeds=edition_feeds(config, edition),
        bundle=paths.depth_root(path) + bundle_folder(edition),
        particle_pattern=PARTICLE_PATTERN,
    )

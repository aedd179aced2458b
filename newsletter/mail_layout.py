"""What a reader sees in an edition's email: the text/plain and text/html bodies.

    render_bodies(config, digest, edition, cut=Cut(...), ...) -> Bodies

Each paper shows its title (a link to the paper when it has one:
newsletter.papers), authors, then the comment(s) of the edition, then the
abstract shortened to `cut.abstract` characters with a "read more" link to
the paper's anchor on the issue's web page (`newsletter.text.shorten`: never
inside a URL or a word), then the paper's links line (arXiv id and category,
PDF, Hugging Face). A `Cut` is also how the size guard (`mail_size`)
gives up content, cheapest loss first; both bodies follow the same `Cut`, so
the text part never carries more than the HTML.

The HTML is CSS-inlined once (premailer, which keeps our `width` attributes:
Outlook for Windows needs its 600 px) and folded so that no line reaches
998 octets where that can be done without changing what the page shows (so
it can travel as 8bit). The text part is wrapped at 76 columns (URLs never
broken) and ends with a numbered list of every URL of the message, one number
per distinct URL.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.plurals import plural
from newsletter.render import (
    edition_comments,
    environment,
    format_date,
    issue_url,
    paper_anchors,
)
from newsletter.text import shorten, urls

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.model import Digest, Edition
    from newsletter.papers.links import PaperLink

# Each label in each language; the `both` edition shows both (Korean first).
LABELS: dict[str, dict[str, Any]] = {
    "ko": {
        "view_in_browser": "웹에서 보기",
        "read_more": "전문 보기",
        "abstract_link": "초록 보기",
        "unsubscribe": "수신 거부",
        "preferences": "구독 설정",
        "forwarded": "전달받은 메일인가요?",
        "subscribe": "구독하기",
        "links": "링크",
        "why": "{title} 구독을 신청하셔서 받는 메일입니다.",
        "count": {"other": "논문 {count}편"},
        "more": {"other": "나머지 논문 {count}편은 웹에서 보세요"},
        "ko": "한국어",
        "en": "English",
    },
    "en": {
        "view_in_browser": "View in browser",
        "read_more": "Read more",
        "abstract_link": "Read the abstract",
        "unsubscribe": "Unsubscribe",
        "preferences": "Preferences",
        "forwarded": "Forwarded this email?",
        "subscribe": "Subscribe",
        "links": "Links",
        "why": "You get this email because you subscribed to {title}.",
        "count": {"one": "{count} paper", "other": "{count} papers"},
        "more": {
            "one": "{count} more paper on the web",
            "other": "{count} more papers on the web",
        },
        "ko": "Korean",
        "en": "English",
    },
}
PREHEADER_LENGTH = 140
TEXT_WIDTH = 76  # columns of the text/plain part
HTML_LINE = 600  # octets: HTML lines are folded to this where possible


@dataclass(frozen=True)
class Cut:
    """What of each paper an email shows: the size guard's content decision.

    `abstract`: characters of each abstract (None: whole, 0: hidden, with a
    link to it); `comment`: characters of each comment (None: whole);
    `papers`: only the first N papers, then a line "M more papers on the web"
    linking to the next one on the issue page (None: every paper).
    """

    abstract: int | None = None
    comment: int | None = None
    papers: int | None = None

    def describe(self, configured: int | None = None) -> str:
        """How this cut differs from the layout (`configured`: the abstract
        length email.abstract_chars asks for; None: whole), for log messages."""
        parts = []
        if self.abstract == configured:
            pass
        elif self.abstract == 0:
            parts.append("abstracts hidden")
        elif self.abstract is not None:
            parts.append(f"abstracts shortened to {self.abstract} characters")
        if self.comment is not None:
            parts.append(f"comments shortened to {self.comment} characters")
        if self.papers is not None:
            first = plural(self.papers, "en", one="paper", other="{count} papers")
            parts.append(f"only the first {first}, the rest behind a link")
        return ", ".join(parts) or "the whole edition"


@dataclass(frozen=True)
class Bodies:
    text: str
    html: str


def _labels(edition: Edition, **fields: Any) -> dict[str, dict[str, str]]:
    """Every label of an edition, by language ("ko", "en"; both for `both`), with
    `fields` filled in and counts in their CLDR plural form."""
    languages = ("ko", "en") if edition.value == "both" else (edition.language,)
    out = {}
    for lang in languages:
        texts = {}
        for name, label in LABELS[lang].items():
            if isinstance(label, dict):
                texts[name] = plural(int(fields.get(name, 0)), lang, **label)
            else:
                texts[name] = label.format(**fields)
        out[lang] = texts
    return out


class _Links:
    """The text part's numbered links: one number per distinct URL, in reading order."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}

    def number(self, url: str) -> int:
        return self.numbers.setdefault(url, len(self.numbers) + 1)

    def refs(self, text: str) -> list[int]:
        """The numbers of a paragraph's URLs, each once, in order."""
        return list(dict.fromkeys(self.number(url) for url in urls(text)))


def _entries(
    digest: Digest, edition: Edition, cut: Cut, page: str, links: _Links
) -> list[dict[str, Any]]:
    anchors = paper_anchors([entry.title for entry in digest.entries])
    shown = digest.entries if cut.papers is None else digest.entries[: cut.papers]
    rows = []
    for number, (entry, anchor) in enumerate(zip(shown, anchors, strict=False), 1):
        url = f"{page}#{anchor}"  # the paper on the issue page ("read more")
        comments = []
        for comment in edition_comments(entry, edition.value):
            short = shorten(comment.text, len(comment.text) if cut.comment is None else cut.comment)
            comments.append(
                {
                    "lang": comment.language,
                    "label": LABELS[edition.language][comment.language]
                    if edition.value == "both"
                    else "",
                    "text": short.head,
                    "ellipsis": short.ellipsis,
                    "cut": short.cut,
                    "refs": links.refs(short.head),
                    "ref": links.number(url) if short.cut else None,
                }
            )
        limit = len(entry.abstract) if cut.abstract is None else cut.abstract
        abstract = shorten(entry.abstract, limit)
        abstract_refs = links.refs(abstract.head)
        abstract_ref = links.number(url) if abstract.cut else None
        rows.append(
            {
                "number": number,
                "url": url,
                "title": " ".join(entry.title.split()),
                "authors": ", ".join(entry.authors),
                "comments": comments,
                "abstract": abstract.head,
                "ellipsis": abstract.ellipsis,
                "cut": abstract.cut,
                "abstract_refs": abstract_refs,
                "abstract_ref": abstract_ref,
                "link": _paper_link(digest.link(number - 1), links),
                "tags": entry.tags,
                "tag_line": " ".join(f"#{tag}" for tag in entry.tags),
            }
        )
    return rows


def _paper_link(link: PaperLink | None, links: _Links) -> dict[str, Any] | None:
    """A paper's links line, numbered for the text part: the title's target,
    its name ('arXiv:ID' or a host), the category, the PDF and Hugging Face
    pages where there are (each a (url, number) pair, or None)."""
    if link is None:
        return None

    def numbered(url: str | None) -> tuple[str, int] | None:
        return (url, links.number(url)) if url else None

    return {
        "url": link.url,
        "name": link.name,
        "category": link.category,
        "main": numbered(link.url),
        "pdf": numbered(link.pdf_url),
        "hf": numbered(link.hf_url),
    }


def _preheader(digest: Digest) -> str:
    """The inbox preview line: the first titles, cut between words."""
    titles = " · ".join(" ".join(entry.title.split()) for entry in digest.entries[:3])
    return str(shorten(titles, PREHEADER_LENGTH))


def _css(config: Config) -> str:
    env = environment(config)
    loader = env.loader
    assert loader is not None
    source, _name, _uptodate = loader.get_source(env, "email/email.css")
    return re.sub(r"/\*.*?\*/\s*", "", source, flags=re.S).strip()


def inline_css(html: str) -> str:
    """Inline the CSS (premailer, imported lazily: it is slow to import).

    Only what cannot be inlined (the @media rules) stays in a <style> block.
    Our `width`/`height` attributes are kept as written: premailer would
    otherwise copy `width: 100%` from the CSS over the container's 600.
    """
    import premailer

    inlined = premailer.Premailer(
        html,
        allow_network=False,
        strip_important=False,
        keep_style_tags=False,
        remove_classes=False,
        disable_validation=True,
        disable_basic_attributes=["width", "height"],
        cssutils_logging_level=logging.CRITICAL,
    ).transform()
    # cssutils pretty-prints what it leaves in <style>: one line per rule
    # (short lines, as 8bit needs).
    return re.sub(
        r"<style>(.*?)</style>",
        lambda m: "<style>" + re.sub(r"\s+", " ", m[1]).strip().replace("} ", "}\n") + "</style>",
        inlined,
        flags=re.S,
    )


# Tags, comments and elements whose text must not be touched; text between them.
_HTML_TOKEN = re.compile(
    r"<!--.*?-->|<(style|title|pre|textarea|script)\b.*?</\1\s*>|<[^>]*>|[^<]+", re.S | re.I
)


def fold_html(html: str, limit: int = HTML_LINE) -> str:
    """HTML with lines of at most `limit` UTF-8 octets where it can be done
    without changing the page: a space in text becomes a newline (the same
    white space to HTML). Tags, comments and style/title/pre elements are
    never cut; a line without such a space stays long."""
    out: list[str] = []
    width = 0  # octets on the current output line
    for match in _HTML_TOKEN.finditer(html):
        token = match[0]
        if token.startswith("<"):
            out.append(token)
            newline = token.rfind("\n")
            size = len(token[newline + 1 :].encode()) if newline >= 0 else len(token.encode())
            width = size if newline >= 0 else width + size
            continue
        for index, line in enumerate(token.split("\n")):
            if index:
                out.append("\n")
                width = 0
            words = line.split(" ")
            for position, word in enumerate(words):
                size = len(word.encode())
                if position:
                    if width + 1 + size > limit and width > 0:
                        out.append("\n")
                        width = 0
                    else:
                        out.append(" ")
                        width += 1
                out.append(word)
                width += size
    return "".join(out)


def render_bodies(
    config: Config,
    digest: Digest,
    edition: Edition,
    *,
    subject: str,
    unsubscribe: str,
    preferences: str,
    cut: Cut = Cut(),
) -> Bodies:
    """Text and CSS-inlined HTML bodies of one edition with `cut` applied.

    `unsubscribe` and `preferences` are the reader's links as given (a
    placeholder for the token when the edition is prebuilt).
    """
    env = environment(config)
    lang = edition.language
    page = issue_url(config, digest.date, edition.value)
    links = _Links()
    links.number(page)
    entries = _entries(digest, edition, cut, page, links)
    more = None
    if cut.papers is not None and cut.papers < len(digest.entries):
        anchor = paper_anchors([e.title for e in digest.entries])[cut.papers]
        more_url = f"{page}#{anchor}"
        more = {"url": more_url, "ref": links.number(more_url)}
    subscribe = f"{config.server.public_url}subscribe"
    shown = len(entries)
    labels = _labels(
        edition,
        title=config.site.title,
        count=len(digest.entries),
        more=len(digest.entries) - shown,
    )
    footer_refs = {
        "unsubscribe": links.number(unsubscribe),
        "preferences": links.number(preferences),
        "subscribe": links.number(subscribe),
    }
    context = {
        "lang": lang,
        "subject": subject,
        "site_title": config.site.title,
        "date_text": format_date(digest.date, lang),
        "issue_url": page,
        "unsubscribe_url": unsubscribe,
        "preferences_url": preferences,
        "subscribe_url": subscribe,
        "postal_address": " · ".join(
            line.strip() for line in (config.email.postal_address or "").splitlines() if line
        ),
        "preheader": _preheader(digest),
        "L": labels,
        "languages": tuple(labels),
        "entries": entries,
        "more": more,
        "footer_refs": footer_refs,
        "links": sorted((n, url) for url, n in links.numbers.items()),
        "edition": edition.value,
    }
    text = env.get_template("email/email.txt").render(context)
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"
    html = env.get_template("email/email.html").render(context | {"css": _css(config)})
    return Bodies(text=text, html=fold_html(inline_css(html)))

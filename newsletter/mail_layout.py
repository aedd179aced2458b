"""What a reader sees in an edition's email: the text/plain and text/html bodies.

    render_bodies(config, letter, edition, cut=Cut(...), ...) -> Bodies

A `Letter` (newsletter.letters) is a day's issue or a week's (grouped by day,
newest first, each day under its date), with every paper or a reader's topics.
Each paper shows its title (a link to the paper when it has one:
newsletter.papers), authors, then the comment(s) of the edition, then the
abstract shortened to `cut.abstract` characters with a "read more" link to
the paper's anchor on its issue's web page (`newsletter.text.shorten`: never
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

import functools
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.model import Week
from newsletter.plurals import plural
from newsletter.render import (
    edition_comments,
    format_date,
    format_span,
    issue_url,
    paper_anchors,
    weekly_url,
)
from newsletter.templating import environment
from newsletter.text import shorten, urls

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.letters import Letter
    from newsletter.model import Edition
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
        "weekly": "주간",
        "topics": "고른 주제의 논문만 보내 드립니다. 주제는 구독 설정에서 바꿀 수 있습니다.",
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
        "weekly": "Weekly",
        "topics": "Only papers on the topics you chose; change them in Preferences.",
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
    config: Config, letter: Letter, edition: Edition, cut: Cut, links: _Links
) -> list[dict[str, Any]]:
    papers = letter.papers
    shown = papers if cut.papers is None else papers[: cut.papers]
    anchors = {
        day.date: paper_anchors([e.title for e in day.digest.entries]) for day in letter.days
    }
    rows = []
    previous = None
    for number, (day, index) in enumerate(shown, 1):
        entry = day.digest.entries[index]
        # The paper on its issue's page ("read more").
        url = f"{issue_url(config, day.date, edition.value)}#{anchors[day.date][index]}"
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
        # A weekly letter groups its papers by day, each day under its date.
        heading = None
        if letter.is_weekly and day is not previous:
            heading = {"id": day.date.isoformat(), "text": format_date(day.date, edition.language)}
        previous = day
        rows.append(
            {
                "number": number,
                "url": url,
                "day": heading,
                "title": " ".join(entry.title.split()),
                "authors": ", ".join(entry.authors),
                "comments": comments,
                "abstract": abstract.head,
                "ellipsis": abstract.ellipsis,
                "cut": abstract.cut,
                "abstract_refs": abstract_refs,
                "abstract_ref": abstract_ref,
                "link": _paper_link(day.digest.link(index), links),
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


def _preheader(letter: Letter) -> str:
    """The inbox preview line: the first titles, cut between words."""
    first = [day.digest.entries[index] for day, index in letter.papers[:3]]
    titles = " · ".join(" ".join(entry.title.split()) for entry in first)
    return str(shorten(titles, PREHEADER_LENGTH))


def letter_page(config: Config, letter: Letter, edition: str) -> str:
    """The web page of a letter ("view in browser"): its issue's, or its week's."""
    if isinstance(letter.issue, Week):
        return weekly_url(config, letter.issue, edition)
    return issue_url(config, letter.issue, edition)


def letter_date(letter: Letter, language: str) -> str:
    """'2025년 4월 4일', or for a weekly letter its days: 'Apr 7 – 13, 2025'."""
    if letter.span is not None:
        return format_span(*letter.span, language)
    return format_date(letter.days[0].date, language)


def more_url(config: Config, letter: Letter, edition: str, shown: int) -> str:
    """Where "M more papers on the web" leads: the first paper left out, on the
    issue page (daily) or on the weekly page, whose paper ids are DATE-ANCHOR."""
    day, index = letter.papers[shown]
    anchor = paper_anchors([e.title for e in day.digest.entries])[index]
    if letter.is_weekly:
        return f"{letter_page(config, letter, edition)}#{day.date.isoformat()}-{anchor}"
    return f"{letter_page(config, letter, edition)}#{anchor}"


def _css(config: Config) -> str:
    return _css_of(environment(config))


@functools.cache
def _css_of(env: Any) -> str:
    """templates/email/email.css without its comments, read once per environment."""
    loader = env.loader
    assert loader is not None
    source, _name, _uptodate = loader.get_source(env, "email/email.css")
    return re.sub(r"/\*.*?\*/\s*", "", source, flags=re.S).strip()


@functools.cache
def _premailer_class() -> type:
    """premailer.Premailer that parses each stylesheet once per process.

    Every email of a send (each edition, each topic variant, each step of the
    size guard) inlines the same stylesheet; premailer parses and serialises
    it anew each time (cssutils), which was two thirds of its ~40 ms. The
    parsed rules depend only on the stylesheet's text (and our fixed options),
    and premailer only reads them, so they are kept: 3x faster inlining, the
    same output (tests/golden/email). Overrides two methods of premailer 3.x
    (pinned <4 in pyproject.toml).
    """
    import premailer

    parsed: dict[tuple[str, int], tuple[list[Any], list[Any]]] = {}
    written: dict[int, str] = {}

    class Premailer(premailer.Premailer):  # type: ignore[misc]
        def _parse_style_rules(self, css_body: str, ruleset_index: int) -> Any:
            key = (css_body, ruleset_index)
            if key not in parsed:
                parsed[key] = super()._parse_style_rules(css_body, ruleset_index)
            rules, leftover = parsed[key]
            return list(rules), leftover

        def _css_rules_to_string(self, rules: Any) -> str:
            key = id(rules)
            if not any(rules is kept[1] for kept in parsed.values()):
                return str(super()._css_rules_to_string(rules))
            if key not in written:
                written[key] = super()._css_rules_to_string(rules)
            return written[key]

    return Premailer


def inline_css(html: str) -> str:
    """Inline the CSS (premailer, imported lazily: it is slow to import).

    Only what cannot be inlined (the @media rules) stays in a <style> block.
    Our `width`/`height` attributes are kept as written: premailer would
    otherwise copy `width: 100%` from the CSS over the container's 600.
    """
    inlined = _premailer_class()(
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
    letter: Letter,
    edition: Edition,
    *,
    subject: str,
    unsubscribe: str,
    preferences: str,
    cut: Cut = Cut(),
    topics: bool = False,
) -> Bodies:
    """Text and CSS-inlined HTML bodies of one edition of a letter with `cut` applied.

    `unsubscribe` and `preferences` are the reader's links as given (a
    placeholder for the token when the edition is prebuilt). `topics`: the
    letter holds only the papers of a reader's topics (the footer says so).
    """
    env = environment(config)
    lang = edition.language
    page = letter_page(config, letter, edition.value)
    links = _Links()
    links.number(page)
    entries = _entries(config, letter, edition, cut, links)
    more = None
    if cut.papers is not None and cut.papers < letter.count:
        url = more_url(config, letter, edition.value, cut.papers)
        more = {"url": url, "ref": links.number(url)}
    subscribe = f"{config.server.public_url}subscribe"
    shown = len(entries)
    labels = _labels(
        edition,
        title=config.site.title,
        count=letter.count,
        more=letter.count - shown,
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
        "date_text": letter_date(letter, lang),
        "weekly": letter.is_weekly,
        "topics": topics,
        "issue_url": page,
        "unsubscribe_url": unsubscribe,
        "preferences_url": preferences,
        "subscribe_url": subscribe,
        "postal_address": " · ".join(
            line.strip() for line in (config.email.postal_address or "").splitlines() if line
        ),
        "preheader": _preheader(letter),
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

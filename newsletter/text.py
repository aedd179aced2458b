"""Digest text for readers: where a bare URL starts and ends, links, and shortening.

Every output that shows digest text (site pages, feed content, the email's HTML
and its text part's numbered link list) finds URLs with `url_spans`, so a link
ends at the same character everywhere; every place that shortens text (the
email size guard, the preheader, error messages) uses `shorten`, which never
cuts inside a URL or a word.

Where a bare URL ends (there is no standard; these are the rules of GitHub's
and linkify-it's autolinkers, plus East Asian text):

- It starts at `http://` or `https://` and runs over the characters RFC 3986
  allows (percent-escapes included) and letters, marks and digits of scripts
  written with spaces (an IRI such as `https://de.wikipedia.org/wiki/Müller`).
- Whitespace (the ideographic space too) ends it, and so does any East Asian
  wide or fullwidth character (Unicode East_Asian_Width W or F: Hangul, CJK,
  kana, fullwidth punctuation `（）。、，：`), so that
  `https://example.org/a에서` links `https://example.org/a`.
- Trailing `.` `,` `;` `:` `!` `?` `'` and an unbalanced `)` or `]` are given
  back to the sentence; balanced parentheses stay
  (`https://en.wikipedia.org/wiki/Transformer_(deep_learning)`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from markupsafe import Markup, escape

from newsletter.model import HANGUL

ELLIPSIS = "…"

_START = re.compile(r"https?://")
# RFC 3986 unreserved, reserved and '%' (for escapes): the ASCII a URL may hold.
_ASCII_RUN = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_TRAILING = ".,;:!?'"
_CLOSERS = {")": "(", "]": "["}
# What may be left dangling at the end of a shortened text: cut it too.
_DANGLING = ",;:([{"


def _wide(char: str) -> bool:
    """East Asian wide or fullwidth (Unicode East_Asian_Width W or F: Hangul, CJK,
    kana, fullwidth forms): two columns on a terminal, never part of a bare URL."""
    return unicodedata.east_asian_width(char) in ("W", "F")


def _is_iri_char(char: str) -> bool:
    """A non-ASCII character that may continue a URL: letters, marks, digits of
    scripts that are not East Asian wide (those are never part of a bare URL)."""
    if _wide(char):
        return False
    return unicodedata.category(char)[0] in "LMN"


def _trim(candidate: str) -> str:
    """Give trailing punctuation and unbalanced closing brackets back to the text."""
    url = candidate
    while url:
        last = url[-1]
        opener = _CLOSERS.get(last)
        if last in _TRAILING or (opener and url.count(opener) < url.count(last)):
            url = url[:-1]
        else:
            break
    return url


def url_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every bare http(s) URL in text, in order (see the module doc).

    A scheme with nothing after it (`https://.`) is not a URL.
    """
    spans: list[tuple[int, int]] = []
    position = 0
    while match := _START.search(text, position):
        end = match.end()
        while True:
            end = _ASCII_RUN.match(text, end).end()  # type: ignore[union-attr]
            if end < len(text) and text[end] >= "\x80" and _is_iri_char(text[end]):
                end += 1
            else:
                break
        url_end = match.start() + len(_trim(text[match.start() : end]))
        if url_end > match.end():
            spans.append((match.start(), url_end))
            position = url_end
        else:
            position = match.end()
    return spans


def urls(text: str) -> list[str]:
    """The URLs of a text, in order, exactly as `linkify` links them."""
    return [text[start:end] for start, end in url_spans(text)]


@functools.lru_cache(maxsize=65536)
def linkify(text: str) -> Markup:
    """Escape text for HTML and turn each bare URL into `<a href="URL">URL</a>`.

    Cached: a site build shows each comment on its issue page, its tag pages
    and its feeds.
    """
    if "http" not in text:
        return escape(text)
    out: list[str] = []
    last = 0
    for start, end in url_spans(text):
        out.append(escape(text[last:start]))
        url = escape(text[start:end])  # an f-string: Markup.format costs 4x as much
        out.append(Markup(f'<a href="{url}">{url}</a>'))
        last = end
    out.append(escape(text[last:]))
    return Markup("").join(out)


# --- shortening -------------------------------------------------------------------


@dataclass(frozen=True)
class Shortened:
    """A text cut to a limit: `head` is whole words and whole URLs, `cut` says
    whether anything was left out; `ellipsis` is what follows the head: "" (not
    cut, or nothing kept), "…", or " …" when the head ends with a URL, so that
    no autolinker can take the ellipsis into the link."""

    head: str
    cut: bool = False

    @property
    def ellipsis(self) -> str:
        if not self.cut or not self.head:
            return ""
        ends_with_url = any(end == len(self.head) for _start, end in url_spans(self.head))
        return f" {ELLIPSIS}" if ends_with_url else ELLIPSIS

    def __str__(self) -> str:
        return self.head + self.ellipsis


def _is_word_char(char: str) -> bool:
    """Letters and digits of scripts that put spaces between words (Latin, Hangul…).

    Han and kana are written without spaces: a cut between two of them is a
    cut between words, so they do not count here.
    """
    if not char.isalnum():
        return False
    if _wide(char):
        return bool(HANGUL.match(char))
    return True


def shorten(text: str, limit: int) -> Shortened:
    """At most `limit` characters of text, ellipsis included, cut between words.

    The cut never falls inside a URL (a URL that does not fit is left out
    whole) nor inside a Latin or Hangul word: it is at the last space that
    keeps at least 60% of the room, else at the last other place between two
    characters that are not both word characters (so Chinese or Japanese text
    without spaces can be cut), else at the last space. A dangling `,;:([{`
    before the cut goes too. A limit too small for any word leaves nothing.
    """
    if len(text) <= limit:
        return Shortened(text)
    short = _cut(text, limit - len(ELLIPSIS))
    if len(str(short)) > limit:  # the head ends with a URL: " …" is one longer
        short = _cut(text, limit - len(ELLIPSIS) - 1)
    return short


def _cut(text: str, room: int) -> Shortened:
    if room <= 0:
        return Shortened("", cut=True)
    spans = url_spans(text)
    inside = bytearray(room + 1)  # 1 where a cut would split a URL
    for start, end in spans:
        for index in range(start + 1, min(end, room + 1)):
            inside[index] = 1
    best_space = best_other = 0
    for index in range(room, 0, -1):
        if inside[index]:
            continue
        before, after = text[index - 1], text[index]
        if after.isspace() or before.isspace():
            best_space = index
            break
        if not best_other and not (_is_word_char(before) and _is_word_char(after)):
            best_other = index
    cut = best_space if best_space >= room * 0.6 or not best_other else best_other
    head = text[:cut].rstrip()
    url_ends = {end for _start, end in spans}
    while head and head[-1] in _DANGLING and len(head) not in url_ends:
        head = head[:-1].rstrip()
    return Shortened(head, cut=True)


# --- wrapping (the email's text/plain part) -------------------------------------


def columns(text: str) -> int:
    """Display width: East Asian wide and fullwidth characters (Hangul, CJK) count 2."""
    return sum(2 if _wide(char) else 1 for char in text)


def wrap(text: str, width: int = 76) -> list[str]:
    """Text as lines of at most `width` columns (`columns`), for plain-text email.

    Lines break at spaces (the space goes); a URL is never broken: one that
    does not fit gets a line of its own, even if longer than `width`. A run
    without spaces wider than `width` breaks where `shorten` may cut
    (between two characters that are not both Latin or Hangul word
    characters, e.g. between Chinese characters, never inside a URL), else
    stays whole. Runs of spaces become one space; Hangul is never split.
    """
    text = re.sub(" {2,}", " ", text).strip(" ")
    if not text:
        return []
    inside = bytearray(len(text) + 1)  # 1 where a break would split a URL
    for start, end in url_spans(text):
        for index in range(start + 1, end):
            inside[index] = 1
    lines: list[str] = []
    start = 0
    while start < len(text):
        line_width = 0
        index = start
        last_space = last_other = -1
        while index < len(text):
            char = text[index]
            if index > start and not inside[index]:
                if char == " ":
                    last_space = index
                elif not (_is_word_char(text[index - 1]) and _is_word_char(char)) and (
                    text[index - 1] != " "
                ):
                    last_other = index
            line_width += 2 if _wide(char) else 1
            if line_width > width:
                break
            index += 1
        if index >= len(text):
            lines.append(text[start:])
            break
        if last_space > start:
            lines.append(text[start:last_space])
            start = last_space + 1
        elif last_other > start:
            lines.append(text[start:last_other])
            start = last_other
        else:  # nothing breakable within the width: up to the next space
            space = index
            while space < len(text) and (text[space] != " " or inside[space]):
                space += 1
            lines.append(text[start:space])
            start = space + 1
    return lines

"""Is this arXiv entry the digest's paper? Titles equal, and an author in common.

A match needs both:

- the normalised titles are equal: Unicode NFKC, case folded, diacritics and
  LaTeX remnants (`\\textbf{..}`, `$..$`, `\\'e`, `--`, `\\&`) removed, and all
  punctuation and whitespace ignored, so 'Mixture-of-Experts' equals
  'Mixture of Experts' and `Let's` equals `Let’s`. Nothing looser: a near miss
  is no match.
- at least one author's family name is on both lists. Family names are
  compared without case and diacritics ('Vulić' = 'Vulic'), in either
  name order ('Fan Zhou' = 'Zhou Fan', as Chinese and Korean names are often
  written both ways, when both given and family name agree), with 'Family,
  Given' and initials ('E. P. Xing') understood, and parenthesised nicknames
  ('Jensen (Jinghao) Zhou') ignored.

Pure functions over strings; no network.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

# Commands that only style their argument: `\textbf{X}` is X.
_STYLE = (
    "text|textbf|textit|texttt|textsc|textsf|textrm|textnormal|textup|textsl|textmd|"
    "emph|underline|mbox|hbox|bm|boldsymbol|operatorname|"
    "math|mathbf|mathit|mathrm|mathsf|mathtt|mathcal|mathbb|mathfrak|mathscr|mathnormal|"
    "bf|it|tt|sc|sf|rm|em|sl|small|large|Large|scriptsize|footnotesize|normalsize"
)
_STYLE_CMD = re.compile(rf"\\(?:{_STYLE})(?![A-Za-z])\*?")
# Accents: `\'e`, `\"{u}`, `\c{c}`, `\v s`; the diacritic goes anyway.
_ACCENT = re.compile(r"\\(?:['\"`^~=.]|[cvuHkrbd](?![A-Za-z]))\s*")
_ESCAPED = re.compile(r"\\([&%$#_{}])")
_COMMAND = re.compile(r"\\([A-Za-z]+)")
# Not a letter or digit (str.isalnum): \w is exactly those and '_'.
_NOT_ALNUM = re.compile(r"[\W_]+")
_LATEX_CHARS = frozenset("\\{}$~")
_LETTERS_ONLY = {"ł": "l", "ø": "o", "đ": "d", "ð": "d", "þ": "th", "æ": "ae", "œ": "oe", "ı": "i"}


def _greek(name: str) -> str | None:
    """`alpha` -> 'α', `Omega` -> 'Ω'; None if not a Greek letter's name."""
    case = "CAPITAL" if name[0].isupper() else "SMALL"
    try:
        return unicodedata.lookup(f"GREEK {case} LETTER {name.upper()}")
    except KeyError:
        return None


def strip_latex(text: str) -> str:
    """Text with the LaTeX that arXiv metadata carries reduced to its letters.

    Styling commands and math delimiters go, escaped characters stay as
    themselves, Greek letter commands become the letters, other commands
    keep their name (`\\LaTeX` -> 'LaTeX'). Plain text passes unchanged
    except for `$`, braces and backslashes, which punctuation-blind comparison
    ignores anyway.
    """
    if _LATEX_CHARS.isdisjoint(text):
        return text
    text = _ESCAPED.sub(lambda m: {"$": "\0"}.get(m[1], m[1]), text)
    text = _STYLE_CMD.sub("", text)
    text = _ACCENT.sub("", text)
    text = _COMMAND.sub(lambda m: _greek(m[1]) or m[1], text)
    text = text.replace("\\\\", " ").replace("~", " ")
    text = re.sub(r"[{}$]", "", text).replace("\0", "$")
    return text


def _fold(text: str) -> str:
    """NFKC, case folded, Latin diacritics removed (Hangul and CJK kept whole)."""
    if text.isascii():  # most names and titles: NFKC and marks change nothing
        return text.casefold()
    text = unicodedata.normalize("NFKC", text).casefold()
    out = []
    for char in unicodedata.normalize("NFD", text):
        if unicodedata.combining(char) and out and out[-1].isascii():
            continue  # é -> e, but keep marks on non-Latin letters (Japanese dakuten)
        out.append(_LETTERS_ONLY.get(char, char))
    return unicodedata.normalize("NFC", "".join(out))


def title_key(title: str) -> str:
    """The comparable form of a title: letters and digits only, folded."""
    return _NOT_ALNUM.sub("", _fold(strip_latex(title)))


def title_query(title: str) -> str:
    """An arXiv API `search_query` that finds `title` among the titles.

    Phrases of plain words (`ti:"..."`), lower case so no word reads as an
    operator, joined with AND. Punctuation becomes a space: arXiv's search
    reads a hyphen as NOT and stumbles on colons
    (https://github.com/arXiv/arxiv-search/issues/322). A word with an
    apostrophe ends a phrase and is left out, since the index may split
    `let's` or keep it whole. Exactness is checked on the results, not here.
    """
    phrases: list[list[str]] = [[]]
    for word in _fold(strip_latex(title)).split():
        if re.search(r"\w['’ʼ]\w", word):
            phrases.append([])
            continue
        phrases[-1].extend(re.sub(r"[\W_]+", " ", word).split())
    quoted = [f'ti:"{" ".join(words)}"' for words in phrases if words]
    return " AND ".join(quoted) or 'ti:""'


@dataclass(frozen=True)
class Name:
    """A person's name split for comparison: folded given-name tokens, family name."""

    given: tuple[str, ...]
    family: str


_SUFFIX = {"jr", "sr", "ii", "iii", "iv"}
_PARENS = re.compile(r"\([^)]*\)")
_INITIALS = re.compile(r"^(?:\w\.)+\w?\.?$|^\w$")


def parse_name(name: str) -> Name | None:
    """'Eric P. Xing' -> Name(('eric', 'p'), 'xing'); 'Xing, Eric P.' the same.

    Parenthesised parts are dropped; a trailing initial is not a family name
    ('Xing E. P.' has family 'xing'). None for a name with no letters.
    """
    text = strip_latex(name)
    if "(" in text:
        text = _PARENS.sub(" ", text)
    if "," in text:  # 'Family, Given' or 'Given Family, Jr.'
        head, _, tail = text.partition(",")
        text = head if _fold(tail).strip(" .") in _SUFFIX else f"{tail} {head}"
    tokens = [t for t in text.split() if _fold(t).strip(".") not in _SUFFIX]
    if not tokens:
        return None
    initial = [bool(_INITIALS.match(t)) for t in tokens]
    # The family name is the last token that is not an initial.
    at = max((i for i, is_init in enumerate(initial) if not is_init), default=len(tokens) - 1)
    folded = [_letters(t) for t in tokens]
    family = folded[at]
    if not family:
        return None
    given = tuple(t for i, t in enumerate(folded) if i != at and t)
    return Name(given, family)


def _letters(token: str) -> str:
    return _NOT_ALNUM.sub("", _fold(token))


def same_person_family(a: Name, b: Name) -> bool:
    """Family names agree, in Western order or with given and family swapped."""
    if a.family == b.family:
        return True
    # 'Zhou Fan' vs 'Fan Zhou': swapped order, both parts whole words.
    if a.given and b.given and len(a.given[0]) > 1 and len(b.given[0]) > 1:
        return a.family == b.given[0] and b.family == a.given[0]
    return False


def common_author(ours: Sequence[str], theirs: Sequence[str]) -> tuple[str, str] | None:
    """The first (our name, their name) pair whose family names agree, or None."""
    parsed = [(n, parse_name(n)) for n in theirs]
    for mine in ours:
        a = parse_name(mine)
        if a is None:
            continue
        for other, b in parsed:
            if b is not None and same_person_family(a, b):
                return mine, other
    return None


@dataclass(frozen=True)
class Candidate:
    """One arXiv search result, as far as matching needs it."""

    arxiv_id: str  # without version
    title: str
    authors: tuple[str, ...]
    category: str = ""
    published: str = ""  # ISO 8601, for a stable choice among duplicates


@dataclass(frozen=True)
class Verdict:
    """The matching candidate, or None and the reason why there is none."""

    candidate: Candidate | None
    reason: str


def _short_authors(authors: Sequence[str]) -> str:
    return ", ".join(authors[:3]) + (", …" if len(authors) > 3 else "")


def choose(title: str, authors: Sequence[str], candidates: Sequence[Candidate]) -> Verdict:
    """The candidate with our exact (normalised) title and an author in common.

    Among several, the earliest published (then smallest id) wins, so the same
    inputs always give the same link. Otherwise the reason names the nearest
    candidate, so a person can check it and write an override.
    """
    if not candidates:
        return Verdict(None, "arXiv has no paper with this title")
    key = title_key(title)
    same_title = [c for c in candidates if title_key(c.title) == key]
    if not same_title:
        nearest = max(
            candidates,
            key=lambda c: difflib.SequenceMatcher(None, key, title_key(c.title)).ratio(),
        )
        return Verdict(
            None,
            f"no arXiv title matches exactly; the nearest is {nearest.arxiv_id} “{nearest.title}”",
        )
    matching = [c for c in same_title if common_author(authors, c.authors)]
    if not matching:
        other = same_title[0]
        return Verdict(
            None,
            f"arXiv {other.arxiv_id} has this title but none of our authors "
            f"({_short_authors(other.authors)})",
        )
    best = min(matching, key=lambda c: (c.published or "~", c.arxiv_id))
    return Verdict(best, "")


# A name with none of these, in ASCII, is tokens and initials only.
_NAME_MARKUP = re.compile(r"[(),.\\{}$~]")


def family_name(name: str) -> str | None:
    """parse_name(name).family (None for a name without letters), computed
    alone: every publish takes a cache key of every paper, so plain ASCII
    names ('Fan Zhou', 'Eric P Xing') take a short path."""
    if not name.isascii() or _NAME_MARKUP.search(name):
        parsed = parse_name(name)
        return parsed.family if parsed is not None else None
    tokens = [t for t in name.split() if t.casefold() not in _SUFFIX]
    if not tokens:
        return None
    family = next(
        (t for t in reversed(tokens) if len(t) > 1 or not (t.isalnum() or t == "_")),
        tokens[-1],
    )
    return _NOT_ALNUM.sub("", family.casefold()) or None


def paper_key(title: str, authors: Sequence[str]) -> str:
    """A paper's key in the link cache, 64 hex digits: the SHA-256 of its
    normalised title and its sorted family names, so what matching ignores
    (case, punctuation, author order and name form) does not make a new paper."""
    import hashlib

    families = sorted({f for f in map(family_name, authors) if f is not None})
    text = title_key(title) + "\n" + ",".join(families)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

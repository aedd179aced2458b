"""Counted words ("1 paper", "3 papers", "논문 3편") by CLDR plural rules (Babel).

English has the categories `one` and `other`; Korean only `other`. Babel
knows the rules of every CLDR locale, so a language added later needs only its
forms. Babel is imported when a count is first written, not with this module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable


@functools.cache
def _rule(language: str) -> Callable[[int], str]:
    from babel import Locale

    return Locale.parse(language).plural_form


def plural_category(count: int, language: str) -> str:
    """The CLDR plural category of count in language: 'zero', 'one', 'two', 'few',
    'many' or 'other' (https://cldr.unicode.org/index/cldr-spec/plural-rules)."""
    return _rule(language)(count)


def plural(count: int, language: str, **forms: str) -> str:
    """The form for count's plural category, with `{count}` filled in.

    `forms` maps CLDR categories to patterns and must have `other`, the form
    every category falls back to:
    `plural(1, "en", one="{count} paper", other="{count} papers")` is "1 paper".
    """
    pattern = forms.get(plural_category(count, language), forms["other"])
    return pattern.format(count=count)


def nouns(count: int, one: str, other: str) -> str:
    """An English count and noun: nouns(1, "file", "files") is "1 file"."""
    return plural(count, "en", one=f"{{count}} {one}", other=f"{{count}} {other}")

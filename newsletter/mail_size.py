"""The email size guard: the most of an edition that fits `email.max_bytes`.

    fit(measure, papers=N, abstract_chars=A, limit=L) -> Cut    # or DoesNotFit

`measure(cut)` is the size in bytes of the edition's HTML part as it would
be transmitted with that `Cut` (after transfer encoding, with the longest
personal values). When the whole edition does not fit, content is given up
in steps, cheapest loss first:

1. abstracts shortened further (`ABSTRACT_STEPS` below email.abstract_chars),
2. abstracts hidden (each paper keeps a link to its abstract on the web),
3. comments shortened (`COMMENT_STEPS`), with "read more" links,
4. the first N papers in full (as email.abstract_chars shows them) and a line
   "M more papers on the web" linking to the next paper on the issue page;
   if not even the first paper fits in full, the first N papers as step 3
   left them.

Each step keeps the footer. The steps are searched by bisection (the size
only shrinks along them), so a 60-paper edition costs about ten renders, not
sixty. If not even one paper fits: `DoesNotFit`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from newsletter.mail_layout import Cut

ABSTRACT_STEPS = (1200, 800, 500, 300, 150)
COMMENT_STEPS = (600, 300, 150)


class DoesNotFit(Exception):
    """Not even the first paper fits under the limit; `size` is its smallest form."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes")
        self.size = size


def ladder(abstract_chars: int) -> list[Cut]:
    """The content steps, from the configured layout to the least content.

    `abstract_chars`: email.abstract_chars (-1: whole abstracts, 0: hidden).
    """
    first = None if abstract_chars < 0 else abstract_chars
    levels = [Cut(abstract=first)]
    if first != 0:
        levels += [Cut(abstract=a) for a in ABSTRACT_STEPS if first is None or a < first]
        levels.append(Cut(abstract=0))
    levels += [Cut(abstract=0, comment=c) for c in COMMENT_STEPS]
    return levels


def fit(
    measure: Callable[[Cut], int],
    *,
    papers: int,
    abstract_chars: int,
    limit: int,
    guess: Callable[[Cut, int], int | None] | None = None,
) -> Cut:
    """The first `Cut` along the steps (see the module doc) whose size is <= limit.

    `guess(content, limit)`, if given, estimates how many papers fit with
    `content` (e.g. from the sizes of the paper blocks of a render already
    made); the search starts there and checks it with `measure`, so a good
    guess costs two measurements instead of a bisection's six.
    """
    levels = ladder(abstract_chars)
    if measure(levels[0]) <= limit:
        return levels[0]
    if measure(levels[-1]) <= limit:
        low, high = 1, len(levels) - 1  # levels[high] fits
        while low < high:
            middle = (low + high) // 2
            if measure(levels[middle]) <= limit:
                high = middle
            else:
                low = middle + 1
        return levels[high]
    for content in (levels[0], levels[-1]):
        estimate = guess(content, limit) if guess is not None else None
        count = _most_papers(measure, content, papers - 1, limit, estimate)
        if count:
            return dataclasses.replace(content, papers=count)
    raise DoesNotFit(measure(dataclasses.replace(levels[-1], papers=1)))


def _most_papers(
    measure: Callable[[Cut], int], content: Cut, most: int, limit: int, guess: int | None
) -> int:
    """The largest N <= most whose first N papers fit with `content`; 0 if none.

    Sizes grow with N, so: check the guess and its neighbour, then bisect
    what is left.
    """

    def fits(count: int) -> bool:
        return measure(dataclasses.replace(content, papers=count)) <= limit

    low, high = 0, most  # the answer is in [low, high]; 0 always "fits"
    if guess is not None and most >= 1:
        guess = min(max(guess, 1), most)
        if fits(guess):
            low = guess
            if guess == most or not fits(guess + 1):
                return guess
            low = guess + 1
        else:
            high = guess - 1
            if high >= 1 and fits(high):
                return high
            high -= 1
    while low < high:
        middle = (low + high + 1) // 2
        if measure(dataclasses.replace(content, papers=middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    return low

"""The manual override file (`paths.links`): links a person sets by hand.

It wins over every lookup: for papers that are not on arXiv, and for matches
that are wrong. YAML, two optional sections:

    titles:                      # by title (compared like the lookup compares)
      "MegaMath: Pushing the Limits of Open Math Corpora": 2504.02807
      "A paper that is not on arXiv": https://example.org/paper.pdf
      "A paper matched wrongly": none
    dates:                       # by issue date and position (1 = first paper)
      2025-04-04:
        2: arXiv:2504.02263v2    # the version is dropped
        4: none

A link is an arXiv id (`2504.02807`, `arXiv:2504.02807v2`, `hep-th/9901001`),
an http(s) URL (an arxiv.org abs/pdf URL counts as its id), or `none` (no
link at all). Date and position win over title. Values are read as written,
so `2504.02810` stays that id (YAML would make it the number 2504.0281).

Every bad entry is reported at once, as `FILE:LINE: KEY: problem`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newsletter.errors import ConfigError
from newsletter.model import parse_date
from newsletter.papers.links import Lookup, PaperLink, parse_arxiv_id
from newsletter.papers.matching import title_key

_HINT = "see 'Paper links' in the README for the file's format"
# ASCII that RFC 3986 never allows in a URL as it is (besides controls and space).
_NOT_IN_URL = frozenset('"<>\\^`{|}')


@dataclass(frozen=True)
class Override:
    """One entry of the file: a link, or None for 'no link'; where it was written."""

    link: PaperLink | None
    where: str  # FILE:LINE

    def lookup(self) -> Lookup:
        if self.link is None:
            return Lookup.not_found(
                f"no link, as the override file says ({self.where})", "override"
            )
        return Lookup.found(self.link, "override")


@dataclass(frozen=True)
class Overrides:
    """The parsed file; empty when there is none."""

    by_title: dict[str, Override] = field(default_factory=dict)
    by_position: dict[tuple[dt.date, int], Override] = field(default_factory=dict)

    def find(self, date: dt.date, position: int, title: str) -> Override | None:
        """The override for the `position`-th paper (from 1) of the issue of `date`."""
        found = self.by_position.get((date, position))
        if found is None and self.by_title:
            found = self.by_title.get(title_key(title))
        return found

    def unused(self, papers: Iterable[tuple[dt.date, int, str]]) -> list[str]:
        """'FILE:LINE' of entries that match none of (date, position, title)."""
        used: set[str] = set()
        for date, position, title in papers:
            for found in (
                self.by_position.get((date, position)),
                self.by_title.get(title_key(title)),
            ):
                if found is not None:
                    used.add(found.where)
        every = [*self.by_title.values(), *self.by_position.values()]
        return [o.where for o in every if o.where not in used]


def parse_target(text: str) -> PaperLink | None:
    """'none' -> None; an arXiv id or http(s) URL -> its link; ValueError otherwise."""
    value = text.strip()
    if value.casefold() == "none":
        return None
    ident = parse_arxiv_id(value)
    if ident is not None:
        return PaperLink.for_arxiv(ident)
    if (
        value.startswith(("http://", "https://"))
        and "." in value.split("/")[2]
        and " " not in value
    ):
        bad = next((c for c in value if c in _NOT_IN_URL or ord(c) < 32 or c == "\x7f"), None)
        if bad is not None:
            raise ValueError(
                f"{value!r} is not a usable URL: {bad!r} must be percent-encoded "
                f"as %{ord(bad):02X} (RFC 3986)"
            )
        return PaperLink.for_url(value)
    raise ValueError(
        f"{value!r} is not an arXiv id (like 2504.02807), an http(s) URL, or none"
        if value
        else "no link given: write an arXiv id, an http(s) URL, or none"
    )


def load_overrides(path: Path) -> Overrides:
    """Read the override file; a missing file is no overrides.

    Raises ConfigError (exit status 2) naming the file, line and key of every bad entry.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return Overrides()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the links file {path}: {exc}", hint=_HINT) from None
    return parse_overrides(text, str(path))


def parse_overrides(text: str, file: str) -> Overrides:
    """Parse the override file's text; `file` names it in messages."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark else file
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"{where}: not valid YAML: {problem}",
            hint="check the indentation, and quote titles that contain ': '",
        ) from None
    reader = _Reader(file)
    result = reader.read(root)
    if reader.problems:
        count = len(reader.problems)
        raise ConfigError(
            f"{file}: {count} problem{'s' if count > 1 else ''} in the links file:\n  "
            + "\n  ".join(reader.problems),
            hint=_HINT,
        )
    return result


class _Reader:
    """Walks the YAML node tree (which keeps line numbers), collecting problems."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[str] = []

    def where(self, node: Any) -> str:
        return f"{self.file}:{node.start_mark.line + 1}"

    def problem(self, node: Any, key: str, message: str) -> None:
        self.problems.append(f"{self.where(node)}: {key}: {message}")

    def mapping(self, node: Any, key: str) -> list[tuple[Any, Any]]:
        import yaml

        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return []  # an empty section
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, key, "expected a mapping of keys to links")
            return []
        return node.value

    def scalar(self, node: Any, key: str) -> str | None:
        import yaml

        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, key, "expected a single value, not a list or mapping")
            return None
        return node.value

    def read(self, root: Any) -> Overrides:
        import yaml

        overrides = Overrides()
        if root is None:
            return overrides
        if not isinstance(root, yaml.MappingNode):
            self.problem(root, "(top level)", "expected the sections 'titles:' and 'dates:'")
            return overrides
        for key_node, value in root.value:
            name = self.scalar(key_node, "(top level)")
            if name == "titles":
                self.titles(value, overrides.by_title)
            elif name == "dates":
                self.dates(value, overrides.by_position)
            elif name is not None:
                self.problem(key_node, name, "unknown section (known: titles, dates)")
        return overrides

    def target(self, node: Any, key: str) -> tuple[bool, PaperLink | None]:
        text = self.scalar(node, key)
        if text is None:
            return False, None
        try:
            return True, parse_target(text)
        except ValueError as exc:
            self.problem(node, key, str(exc))
            return False, None

    def titles(self, node: Any, into: dict[str, Override]) -> None:
        seen: dict[str, str] = {}
        for key_node, value in self.mapping(node, "titles"):
            title = self.scalar(key_node, "titles")
            if title is None:
                continue
            key = f"titles.{title!r}"
            normal = title_key(title)
            if not normal:
                self.problem(key_node, key, "a title needs letters or digits")
                continue
            ok, link = self.target(value, key)
            if normal in seen:
                self.problem(key_node, key, f"the same title is already at {seen[normal]}")
                continue
            seen[normal] = self.where(key_node)
            if ok:
                into[normal] = Override(link, self.where(key_node))

    def dates(self, node: Any, into: dict[tuple[dt.date, int], Override]) -> None:
        seen: dict[dt.date, str] = {}
        slots: dict[tuple[dt.date, int], str] = {}
        for key_node, value in self.mapping(node, "dates"):
            text = self.scalar(key_node, "dates")
            if text is None:
                continue
            try:
                date = parse_date(text.strip())
            except ValueError:
                self.problem(key_node, f"dates.{text}", "not a date like 2025-04-04")
                continue
            if date in seen:
                self.problem(key_node, f"dates.{date}", f"the same date is already at {seen[date]}")
                continue
            seen[date] = self.where(key_node)
            for pos_node, target in self.mapping(value, f"dates.{date}"):
                pos_text = self.scalar(pos_node, f"dates.{date}")
                if pos_text is None:
                    continue
                key = f"dates.{date}.{pos_text}"
                if not pos_text.strip().isdigit() or int(pos_text) < 1:
                    self.problem(
                        pos_node, key, "a position is a whole number from 1 (the first paper)"
                    )
                    continue
                ok, link = self.target(target, key)
                slot = (date, int(pos_text))
                if slot in slots:
                    self.problem(pos_node, key, f"the same position is already at {slots[slot]}")
                    continue
                slots[slot] = self.where(pos_node)
                if ok:
                    into[slot] = Override(link, self.where(pos_node))

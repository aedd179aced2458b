"""Digest text -> Digest. The only module that knows the file format.

See DIGEST_FORMAT in the README: a date line, then entries of title, authors in
parentheses, body (abstract, Korean comment, English comment) and a tag line.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from newsletter.errors import DigestError
from newsletter.model import HANGUL, Digest, DigestLimits, Entry, Problem
from newsletter.text import ELLIPSIS, shorten

_KOREAN_DATE = re.compile(r"^(\d{4})\s*년\s*(\d{1,2})\s*월\s*(\d{1,2})\s*일$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
# A tag: letters of any script, digits, '_', '-', '.'; \w covers the first three.
_TAG = r"#[\w.\-]+"
_TAG_LINE = re.compile(rf"^{_TAG}(?:\s+{_TAG})*$")
_WHOLE_TAG = re.compile(rf"{_TAG}")
# Lines a web page paste leaves on their own: a URL, or only punctuation.
_FRAGMENT = re.compile(r"^(?:\(?https?://\S+|[^\w\s]+)$")
# Only LF, CRLF and CR end a line: the lines an editor shows and numbers.
_LINE_END_BYTES = re.compile(rb"\r\n|\r|\n")
# What str.splitlines() (but no editor) also breaks at: inside a line, whitespace.
_INLINE_BREAKS = {
    "\x0b": "vertical tab (U+000B)",
    "\x0c": "form feed (U+000C)",
    "\x1c": "file separator (U+001C)",
    "\x1d": "group separator (U+001D)",
    "\x1e": "record separator (U+001E)",
    "\x85": "next line (U+0085)",
    "\u2028": "line separator (U+2028)",
    "\u2029": "paragraph separator (U+2029)",
}
_INLINE_BREAK = re.compile("[" + "".join(_INLINE_BREAKS) + "]")
# Other C0/C1 control characters but tab: they break XML (lxml refuses them).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
# Either of the two (one search per line: most lines have neither).
_ODD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_JOIN_WITHOUT_SPACE = tuple(".,;:!?)]}")
DEFAULT_LIMITS = DigestLimits()


@dataclass(frozen=True)
class ParsedDigest:
    digest: Digest
    warnings: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class DigestReport:
    """What checking one file found: a digest, or errors; warnings either way."""

    file: str
    digest: Digest | None
    warnings: tuple[Problem, ...] = ()
    errors: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return self.digest is not None and not self.errors


@dataclass(frozen=True)
class _Line:
    number: int
    text: str


def parse_digest(
    text: str, source: str = "<digest>", limits: DigestLimits = DEFAULT_LIMITS
) -> ParsedDigest:
    """Parse a digest's text. Raises DigestError naming the file and line, also
    for more than `limits.max_entries` entries."""
    warnings: list[Problem] = []
    lines = _clean_lines(text, source, warnings)
    content = [line for line in lines if line.text]
    if not content:
        raise DigestError(
            source,
            None,
            "the file is empty",
            hint="a digest starts with a date line such as '2025년 4월 4일'",
        )
    date = _parse_date(content[0], source)
    entries = []
    block: list[_Line] = []
    for line in content[1:]:
        block.append(line)
        if not _TAG_LINE.match(line.text):
            if line.text.startswith("#"):  # only such a line can be a tag line gone wrong
                _check_tag_line(line, source)
            continue
        if len(entries) == limits.max_entries:
            raise DigestError(
                source,
                block[0].number,
                f"more than {limits.max_entries} entries: this one is entry "
                f"{len(entries) + 1} (limits.max_entries)",
                hint="one day's digest has far fewer papers: check the file, "
                "or raise limits.max_entries in the config",
            )
        entries.append(_parse_entry(block, source, warnings))
        block = []
    if block:
        raise DigestError(
            source,
            block[0].number,
            f"the entry starting here ({_shorten(block[0].text)!r}) has no tag line",
            hint="end every entry with a line of tags such as '#moe #efficiency'",
        )
    if not entries:
        raise DigestError(
            source,
            content[0].number,
            "no entries after the date line",
            hint="each entry is: title, (authors), abstract, Korean comment, English comment, #tags",
        )
    return ParsedDigest(Digest(date, tuple(entries), source), tuple(warnings))


def read_digest(
    path: str | os.PathLike[str], limits: DigestLimits = DEFAULT_LIMITS
) -> ParsedDigest:
    """Read and parse one digest file; a file over `limits.max_bytes` is an error
    (and is not read past the limit)."""
    source = str(path)
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(limits.max_bytes + 1)
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise DigestError(source, None, f"cannot read the file: {exc.strerror or exc}") from None
    if len(data) > limits.max_bytes:
        raise DigestError(
            source,
            None,
            f"the file is {max(size, len(data)):,} bytes, over limits.max_digest_bytes "
            f"({limits.max_bytes:,})",
            hint="one day's digest is far smaller: check the file, "
            "or raise limits.max_digest_bytes in the config",
        )
    return parse_digest(_decode(data, source), source, limits)


def check_paths(
    paths: Iterable[str | os.PathLike[str]], limits: DigestLimits = DEFAULT_LIMITS
) -> list[DigestReport]:
    """Check files and the files in folders; two files with one date are both bad.

    Files over `limits` are bad (DigestLimits: bytes and entries)."""
    reports = [_check_file(file, limits) for file in find_digest_files(paths).files]
    by_date: dict[dt.date, list[int]] = defaultdict(list)
    for index, report in enumerate(reports):
        if report.digest is not None:
            by_date[report.digest.date].append(index)
    for date, indexes in by_date.items():
        if len(indexes) < 2:
            continue
        for index in indexes:
            report = reports[index]
            others = ", ".join(reports[i].file for i in indexes if i != index)
            duplicate = Problem(
                report.file,
                1,
                f"another digest has the same date {date.isoformat()}: {others}",
            )
            # Keep the digest so callers can say which date clashed; errors make it not ok.
            reports[index] = DigestReport(report.file, report.digest, report.warnings, (duplicate,))
    return reports


# Files that editors, sync tools, browsers and operating systems leave beside the
# digests, by (lower-case) name and by ending; any hidden file is skipped too.
_IGNORED_NAMES = {
    "thumbs.db": "Windows thumbnail cache",
    "desktop.ini": "Windows folder settings",
}
_IGNORED_ENDINGS = {
    "~": "backup file",
    ".bak": "backup file",
    ".swp": "Vim swap file",
    ".swo": "Vim swap file",
    ".part": "partial download",
    ".crdownload": "partial download",
    ".download": "partial download",
    ".tmp": "temporary file",
}


def ignored_reason(name: str) -> str | None:
    """Why a file of this name in the digests folder is not a digest, or None.

    Hidden files (`.DS_Store`, macOS `._name`, Emacs `.#name`, Vim
    `.name.swp`), Emacs auto-saves `#name#`, backups (`name~`, `name.bak`),
    Vim swap files, partial downloads (`.part`, `.crdownload`, `.download`),
    `.tmp`, `Thumbs.db` and `desktop.ini`; names compare case-insensitively.
    """
    lower = name.lower()
    if name.startswith("."):
        if name.startswith("._") or lower == ".ds_store":
            return "macOS metadata"
        if name.startswith(".#"):
            return "Emacs lock file"
        if lower.endswith((".swp", ".swo")):
            return "Vim swap file"
        return "hidden file"
    if len(name) > 1 and name.startswith("#") and name.endswith("#"):
        return "Emacs auto-save file"
    if lower in _IGNORED_NAMES:
        return _IGNORED_NAMES[lower]
    for ending, reason in _IGNORED_ENDINGS.items():
        if lower.endswith(ending):
            return reason
    return None


@dataclass(frozen=True)
class Skipped:
    """A file in a digests folder that is not read, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


@dataclass(frozen=True)
class DigestFiles:
    """What a folder (or a list of paths) holds: digest files, and skipped files."""

    files: tuple[Path, ...]
    skipped: tuple[Skipped, ...]


def find_digest_files(paths: Iterable[str | os.PathLike[str]]) -> DigestFiles:
    """The digest files of each path, by name: a folder's regular files except the
    ones `ignored_reason` names (sub-folders are not read); a file named on its
    own is always a candidate. This is the one place that decides what is a
    digest file: check, publish, build and the daemon all list folders here.
    """
    files: list[Path] = []
    skipped: list[Skipped] = []
    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        for child in sorted(path.iterdir()):
            if not child.is_file():
                continue
            reason = ignored_reason(child.name)
            if reason is None:
                files.append(child)
            else:
                skipped.append(Skipped(child, reason))
    return DigestFiles(tuple(files), tuple(skipped))


def format_digest(digest: Digest) -> str:
    """Write a Digest in the file format; parse_digest reads it back unchanged."""
    out = [f"{digest.date.year}년 {digest.date.month}월 {digest.date.day}일"]
    for entry in digest.entries:
        out.append(entry.title)
        out.append("(" + ", ".join(entry.authors) + ")")
        out.extend(part for part in (entry.abstract, entry.comment_ko, entry.comment_en) if part)
        out.append(" ".join(f"#{tag}" for tag in entry.tags))
    return "\n".join(out)


# --- internals ---------------------------------------------------------------


def _decode(data: bytes, source: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or _looks_utf16(data):
        raise DigestError(
            source,
            1,
            "the file is UTF-16 text, not UTF-8",
            hint="save it as UTF-8 (e.g. iconv -f utf-16 -t utf-8 FILE)",
        )
    if b"\x00" in data:
        line = _line_of(data, data.index(b"\x00"))
        raise DigestError(
            source,
            line,
            "this is a binary file, not a digest (it has NUL bytes)",
            hint="digests are UTF-8 text files",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = _line_of(data, exc.start)
        raise DigestError(
            source,
            line,
            "the file is not UTF-8 text",
            hint="save it as UTF-8 (e.g. iconv -f cp949 -t utf-8 FILE)",
        ) from None


def _looks_utf16(data: bytes) -> bool:
    """UTF-16 without a byte-order mark: text whose every other byte is NUL at the start."""
    head = data[: min(64, len(data)) // 2 * 2]  # whole code units only
    if len(head) < 4:
        return False
    return all(b == 0 for b in head[1::2]) or all(b == 0 for b in head[0::2])


def _line_of(data: bytes, offset: int) -> int:
    """The editor's line number (LF, CRLF or CR end a line) of a byte offset."""
    return len(_LINE_END_BYTES.findall(data, 0, offset)) + 1


def _clean_lines(text: str, source: str, warnings: list[Problem]) -> list[_Line]:
    """Split at LF, CRLF and CR only; other breaks inside a line become spaces and
    control characters go, with one warning per line that had either."""
    text = unicodedata.normalize("NFC", text.removeprefix("\ufeff"))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = []
    for number, raw in enumerate(text.split("\n"), start=1):
        if not _ODD.search(raw):
            lines.append(_Line(number, raw.strip()))
            continue
        notes = []
        breaks = dict.fromkeys(_INLINE_BREAKS[char] for char in _INLINE_BREAK.findall(raw))
        if breaks:
            what = " and ".join(breaks)
            notes.append(
                f"{what} inside the line read as {'a space' if len(breaks) == 1 else 'spaces'}"
            )
            raw = _INLINE_BREAK.sub(" ", raw)
        if _CONTROL.search(raw):
            notes.append("control characters removed")
            raw = _CONTROL.sub("", raw)
        if notes:
            warnings.append(Problem(source, number, "; ".join(notes)))
        lines.append(_Line(number, raw.strip()))
    return lines


def _parse_date(line: _Line, source: str) -> dt.date:
    match = _KOREAN_DATE.match(line.text) or _ISO_DATE.match(line.text)
    if not match:
        raise DigestError(
            source,
            line.number,
            f"expected the date line, found {_shorten(line.text)!r}",
            hint="the first line is the issue date: '2025년 4월 4일' or '2025-04-04'",
        )
    year, month, day = (int(part) for part in match.groups())
    try:
        return dt.date(year, month, day)
    except ValueError as exc:
        raise DigestError(source, line.number, f"impossible date {line.text!r}: {exc}") from None


def _check_tag_line(line: _Line, source: str) -> None:
    """DigestError for a line starting with '#' that is meant as tags (every
    word starts with '#', or it starts with a lone '#') but holds something
    that is not a tag; otherwise the entry would run on into the next one and
    the error point elsewhere. Called only for lines that are not tag lines."""
    words = line.text.split()
    if not words or not (words[0] == "#" or all(w.startswith("#") for w in words)):
        return
    bad = next((w for w in words if not _WHOLE_TAG.fullmatch(w)), None)
    if bad is None:
        return
    raise DigestError(
        source,
        line.number,
        f"{_shorten(bad)!r} on the tag line is not a tag",
        hint="a tag is '#' then letters, digits, '-', '_' or '.', with no space "
        "after '#': '#moe #long-context #추론'",
    )


def _parse_entry(block: list[_Line], source: str, warnings: list[Problem]) -> Entry:
    title, *rest = block
    if len(block) == 1:
        raise DigestError(
            source,
            title.number,
            "a tag line with no entry before it",
            hint="an entry is: title, (authors), abstract, comments, then its #tags",
        )
    tag_line = rest.pop()
    tags = tuple(token[1:] for token in tag_line.text.split())
    if not rest or not (rest[0].text.startswith("(") and rest[0].text.endswith(")")):
        found = f"found {_shorten(rest[0].text)!r}" if rest else "found the tag line"
        raise DigestError(
            source,
            rest[0].number if rest else tag_line.number,
            f"entry {_shorten(title.text)!r} has no authors line ({found})",
            hint="the line after the title lists the authors in parentheses: (Name, Name)",
        )
    authors = _split_authors(rest[0], source)
    abstract, comment_ko, comment_en = _split_body(rest[1:])
    where = f"entry {_shorten(title.text)!r}"
    if not abstract:
        warnings.append(Problem(source, title.number, f"{where} has no abstract"))
    if not comment_ko:
        warnings.append(Problem(source, title.number, f"{where} has no Korean comment"))
    if not comment_en:
        warnings.append(Problem(source, title.number, f"{where} has no English comment"))
    return Entry(title.text, authors, abstract, comment_ko, comment_en, tags, line=title.number)


def _split_authors(line: _Line, source: str) -> tuple[str, ...]:
    inner = line.text[1:-1]
    names, depth, current = [], 0, []
    for char in inner:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                break
        if char == "," and depth == 0:
            names.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise DigestError(
            source,
            line.number,
            "unbalanced parentheses in the authors line",
            hint="wrap all names in one pair of parentheses: (Name, Name (Alias), Name)",
        )
    names.append("".join(current).strip())
    return tuple(name for name in names if name)


def _split_body(body: list[_Line]) -> tuple[str, str, str]:
    """Abstract before the Hangul block, Korean comment = the block, English after."""
    texts = [line.text for line in body]
    start = next((i for i, text in enumerate(texts) if HANGUL.search(text)), None)
    if start is None:
        # No Korean comment: the English comment is the last full line, if any;
        # URL or punctuation fragments belong to the abstract they were cut from.
        if len(texts) > 1 and not _FRAGMENT.match(texts[-1]):
            return _join(texts[:-1]), "", texts[-1]
        return _join(texts), "", ""
    end = start
    for i in range(start + 1, len(texts)):
        if HANGUL.search(texts[i]):
            end = i
        elif not _FRAGMENT.match(texts[i]):
            break
    return _join(texts[:start]), _join(texts[start : end + 1]), _join(texts[end + 1 :])


def _join(parts: list[str]) -> str:
    text = ""
    for part in parts:
        if text and not part.startswith(_JOIN_WITHOUT_SPACE):
            text += " "
        text += part
    return text


def _shorten(text: str, width: int = 60) -> str:
    """The start of a line for an error message: at most `width` characters,
    cut between words; a first word or URL longer than that is cut inside,
    since a message must show the line it points at (never '')."""
    short = shorten(text, width)
    if short.cut and not short.head:
        return text[: width - 1] + ELLIPSIS
    return str(short)


def _check_file(path: Path, limits: DigestLimits) -> DigestReport:
    try:
        parsed = read_digest(path, limits)
    except DigestError as exc:
        return DigestReport(str(path), None, (), (Problem(exc.file, exc.line, exc.bare_message),))
    return DigestReport(str(path), parsed.digest, parsed.warnings)

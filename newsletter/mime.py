"""Transfer encodings of prebuilt message parts, with per-recipient splice points.

An edition's text/plain and text/html parts are encoded ONCE; the values that
differ per recipient (the unsubscribe token in the footer's links) are spliced
into the encoded bytes. `encode_part` picks the encoding per part and says how
each value goes in:

- `8bit` (RFC 6152): only for a relay that advertises 8BITMIME, and only when
  every line stays under 998 octets (RFC 5322 2.1.1) with the longest values.
  The value goes in as it is. The smallest form: a Hangul syllable is 3 bytes.
- `quoted-printable` (RFC 2045 6.7): the value sits alone on soft-broken
  lines (its alphabet has no '='), so the folding never cuts through it;
  ASCII costs ~1 byte per byte, a Hangul syllable 9.
- `base64` (RFC 2045 6.8): 4 bytes per 3, whatever the text. Base64 works on
  3-byte groups, so what follows a value shifts with the value's length: the
  literal text after each value is encoded three times, once for each number
  (0-2) of its bytes the value's last group may borrow, and per recipient
  only the value with its 0-2 neighbouring bytes is encoded.

Without 8BITMIME, each part gets the smaller of quoted-printable and base64.
Every piece is CRLF-terminated as SMTP DATA wants; `dot_stuffed` doubles the
leading dots once per edition (RFC 5321 4.5.2).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

CRLF = b"\r\n"
MAX_LINE = 998  # octets, without the CRLF (RFC 5322 2.1.1)
_QP_LINE = 76
_B64_LINE = 76
EIGHT_BIT = "8bit"
QUOTED_PRINTABLE = "quoted-printable"
BASE64 = "base64"


# --- what a value looks like once spliced ------------------------------------------


def qp_fold(value: bytes) -> bytes:
    """An ASCII value without '=' as soft-broken quoted-printable lines (CRLF)."""
    step = _QP_LINE - 1
    return b"=\r\n".join(value[i : i + step] for i in range(0, len(value), step))


def b64_lines(data: bytes) -> bytes:
    """Base64 of data in lines of 76 characters joined by CRLF (no CRLF at the end)."""
    encoded = binascii.b2a_base64(data, newline=False)
    return CRLF.join(encoded[i : i + _B64_LINE] for i in range(0, len(encoded), _B64_LINE))


@dataclass(frozen=True)
class Value:
    """A per-recipient value spliced as is (`qp`: folded as quoted-printable)."""

    name: str
    qp: bool = False
    stuffed: bool = False  # leading dots doubled for SMTP DATA

    def fill(self, values: Mapping[str, bytes]) -> list[bytes]:
        value = values[self.name]
        if self.qp:
            value = qp_fold(value)
        return [self.stuff(value) if self.stuffed else value]

    def dot_stuffed(self) -> Value:
        return Value(self.name, self.qp, True)

    def stuff(self, value: bytes) -> bytes:
        """`value` dot-stuffed where it is spliced (a folded one starts a line)."""
        value = value.replace(b"\n.", b"\n..")
        return b"." + value if self.qp and value[:1] == b"." else value


# A stretch of literal text after a value, encoded for each number of its bytes
# (0, 1, 2) that the value's last base64 group borrows: (encoded, leftover, borrowed).
_Variants = tuple[tuple[bytes, bytes, bytes], ...]


@dataclass(frozen=True)
class Base64Run:
    """A base64 part body with values in it (see the module doc).

    `head` is the encoded text before the first value and `head_tail` its
    0-2 bytes that did not fill a group; `after[i]` are the variants of the
    text after value `names[i]` (the last one ends the part, padded).
    """

    head: bytes
    head_tail: bytes
    names: tuple[str, ...]
    after: tuple[_Variants, ...]

    def fill(self, values: Mapping[str, bytes]) -> list[bytes]:
        blocks = [self.head] if self.head else []  # each: whole lines, no CRLF at the end
        tail = self.head_tail
        for name, variants in zip(self.names, self.after, strict=True):
            chunk = tail + values[name]
            need = min(-len(chunk) % 3, len(variants) - 1)
            encoded, tail, borrowed = variants[need]
            blocks.append(b64_lines(chunk + borrowed))
            if encoded:
                blocks.append(encoded)
        out = [CRLF] * (2 * len(blocks) - 1)
        out[::2] = blocks
        return out

    def dot_stuffed(self) -> Base64Run:
        return self  # the base64 alphabet has no '.'


Splice = Value | Base64Run
Piece = bytes | Splice


def _variants(raw: bytes, last: bool) -> _Variants:
    variants = []
    for borrowed in range(min(2, len(raw)) + 1):
        rest = raw[borrowed:]
        if last:
            variants.append((b64_lines(rest) if rest else b"", b"", raw[:borrowed]))
        else:
            whole = len(rest) - len(rest) % 3
            variants.append((b64_lines(rest[:whole]), rest[whole:], raw[:borrowed]))
    if not last and len(variants) < 3:
        raise ValueError("two spliced values are too close for base64 (need 2 bytes between)")
    return tuple(variants)


# --- a part -------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedPart:
    """One body part encoded once: `pieces` are literal bytes and splices."""

    cte: str  # the Content-Transfer-Encoding
    pieces: tuple[Piece, ...]

    def fill(self, values: Mapping[str, bytes]) -> bytes:
        """The part body for one recipient's values."""
        return fill(self.pieces, values)

    def dot_stuffed(self) -> EncodedPart:
        """The part dot-stuffed for SMTP DATA (see `dot_stuffed`), as a part starts:
        at the beginning of a line."""
        return EncodedPart(self.cte, dot_stuffed(self.pieces))


def fill(pieces: tuple[Piece, ...], values: Mapping[str, bytes]) -> bytes:
    """The bytes of `pieces` with `values` (by name) spliced in."""
    out: list[bytes] = []
    for piece in pieces:
        if isinstance(piece, bytes):
            out.append(piece)
        else:
            out += piece.fill(values)
    return b"".join(out)


def dot_stuffed(pieces: tuple[Piece, ...]) -> tuple[Piece, ...]:
    """Pieces that start a line, with every line that starts with '.' given a
    second one (RFC 5321 4.5.2): the literal bytes once, here; the values as
    they are spliced. No value ends a line, so only a literal that starts the
    pieces can start one."""
    out: list[Piece] = []
    for index, piece in enumerate(pieces):
        if isinstance(piece, bytes):
            piece = piece.replace(b"\n.", b"\n..")
            if index == 0 and piece[:1] == b".":
                piece = b"." + piece
            out.append(piece)
        else:
            out.append(piece.dot_stuffed())
    return tuple(out)


def _split(data: bytes, marks: Mapping[str, str]) -> list[bytes]:
    """data cut at each placeholder: literal, placeholder, literal, ..."""
    if not marks:
        return [data]
    pattern = re.compile(b"(" + b"|".join(re.escape(m.encode()) for m in marks) + b")")
    return pattern.split(data)


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n").encode("utf-8")


def eight_bit(text: str, marks: Mapping[str, str], longest: Mapping[str, bytes]) -> EncodedPart:
    """The part as 8bit (CRLF lines); ValueError if a line would reach 998 octets
    with the `longest` values spliced in."""
    data = _crlf(text)
    widest = data
    for mark, name in marks.items():
        widest = widest.replace(mark.encode(), longest[name])
    if max(len(line) for line in widest.split(CRLF)) >= MAX_LINE:
        raise ValueError("a line reaches 998 octets")
    pieces = _split(data, marks)
    return EncodedPart(
        EIGHT_BIT,
        tuple(Value(marks[p.decode()]) if i % 2 else p for i, p in enumerate(pieces)),
    )


def quoted_printable(text: str, marks: Mapping[str, str]) -> EncodedPart:
    """The part as quoted-printable, each value alone on soft-broken lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    pieces = _split(text.encode("utf-8"), marks)
    out: list[Piece] = []
    for index, piece in enumerate(pieces):
        if index % 2:
            out.append(Value(marks[piece.decode()], qp=True))
        else:
            encoded = _qp(piece)
            if index > 0:
                encoded = b"=\n" + encoded
            if index < len(pieces) - 1:
                encoded = _soft_end(encoded) + b"=\n"
            out.append(encoded.replace(b"\n", CRLF))
    return EncodedPart(QUOTED_PRINTABLE, tuple(out))


def _qp(raw: bytes) -> bytes:
    """binascii.b2a_qp with every line at most 76 characters (RFC 2045 6.7 (5)).

    b2a_qp writes a space or tab before a line break as '=20' / '=09' after it
    has measured the line, so such a line can reach 77 or 78 characters (the
    text 'aa€€€€€€€€ ' then a line break). Those lines get one more soft break.
    """
    encoded = binascii.b2a_qp(raw, istext=True)
    if all(len(line) <= _QP_LINE for line in encoded.split(b"\n")):
        return encoded
    out: list[bytes] = []
    for line in encoded.split(b"\n"):
        while len(line) > _QP_LINE:
            cut = _safe_cut(line, _QP_LINE - 1)
            out.append(line[:cut] + b"=")
            line = line[cut:]
        out.append(line)
    return b"\n".join(out)


def _safe_cut(line: bytes, cut: int) -> int:
    """`cut`, moved left so that it does not split an '=XX' escape."""
    if line[cut - 1 : cut] == b"=":
        return cut - 1
    if line[cut - 2 : cut - 1] == b"=":
        return cut - 2
    return cut


def _soft_end(encoded: bytes) -> bytes:
    """Make room for a trailing soft break '=' on the last encoded line."""
    start = encoded.rfind(b"\n") + 1
    last = encoded[start:]
    if len(last) < _QP_LINE:
        return encoded
    cut = _safe_cut(last, _QP_LINE - 1)  # never inside an '=XX' escape
    return encoded[: start + cut] + b"=\n" + last[cut:]


def base64(text: str, marks: Mapping[str, str]) -> EncodedPart:
    """The part as base64 (of its CRLF form), values spliced per 3-byte group."""
    pieces = _split(_crlf(text), marks)
    if len(pieces) == 1:
        return EncodedPart(BASE64, (b64_lines(pieces[0]),))
    first = pieces[0]
    whole = len(first) - len(first) % 3
    literals = pieces[2::2]
    run = Base64Run(
        head=b64_lines(first[:whole]),
        head_tail=first[whole:],
        names=tuple(marks[p.decode()] for p in pieces[1::2]),
        after=tuple(
            _variants(raw, last=index == len(literals) - 1) for index, raw in enumerate(literals)
        ),
    )
    return EncodedPart(BASE64, (run,))


def encode_part(
    text: str, marks: Mapping[str, str], longest: Mapping[str, bytes], *, eightbit: bool
) -> EncodedPart:
    """The smallest valid encoding of one text part (see the module doc).

    `marks` maps each placeholder in `text` to a value name; `longest` gives the
    longest value of each name (for the 998-octet rule and for the sizes).
    `eightbit`: the relay advertises 8BITMIME.
    """
    if eightbit:
        try:
            return eight_bit(text, marks, longest)
        except ValueError:
            pass
    candidates = [quoted_printable(text, marks), base64(text, marks)]
    return min(candidates, key=lambda part: len(part.fill(longest)))

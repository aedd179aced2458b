"""Transfer encodings with spliced per-recipient values (newsletter.mime).

Every encoding, with values of every length at any place, decodes back to
exactly the text with the values in it; lines stay within their limits; the
choice between 8bit, quoted-printable and base64 is the smallest valid one.
"""

from __future__ import annotations

import binascii
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter import mime

MARK = "NLSLOTABCDEF012345TOKENX"
MARKS = {MARK: "token"}
TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
LONGEST = {"token": b"x" * 364}


def decode(part: mime.EncodedPart, values: dict[str, bytes]) -> bytes:
    data = part.fill(values)
    if part.cte == mime.BASE64:
        return binascii.a2b_base64(data.replace(b"\r\n", b""), strict_mode=True)
    if part.cte == mime.QUOTED_PRINTABLE:
        return binascii.a2b_qp(data)
    return data


def expected(text: str, token: str) -> bytes:
    return text.replace(MARK, token).replace("\n", "\r\n").encode()


def check_lines(part: mime.EncodedPart, values: dict[str, bytes]) -> None:
    lines = part.fill(values).split(b"\r\n")
    assert b"\n" not in b"".join(lines) and b"\r" not in b"".join(lines)
    if part.cte == mime.EIGHT_BIT:
        assert max(map(len, lines)) < 998
    else:
        assert max(map(len, lines)) <= 76
        assert part.fill(values).isascii()


@pytest.mark.parametrize(
    "text",
    [
        "aa€€€€€€€€ \n" + MARK,  # Hypothesis found it: a line of 77 before the fix
        "a" * 74 + " \n" + MARK,
        "a" * 75 + "\t\nb" + MARK,
        "한국어 " * 15 + "\n" + MARK + " 끝 \n",
        MARK + "\n" + "€" * 25 + " \n",
    ],
)
def test_a_space_before_a_line_break_keeps_quoted_printable_lines_short(text):
    """b2a_qp writes the trailing space as '=20' after measuring: never past 76."""
    values = {"token": b"Tok.en-1"}
    part = mime.quoted_printable(text, MARKS)
    assert decode(part, values) == expected(text, "Tok.en-1")
    check_lines(part, values)


pieces = st.text(
    alphabet=st.sampled_from("ab 가나다한국어 .=\n\t€é中" + "x" * 5), min_size=0, max_size=300
)


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(pieces, min_size=1, max_size=4),
    token=st.text(alphabet=TOKEN_ALPHABET, min_size=1, max_size=364),
)
def test_every_encoding_decodes_to_the_text_with_the_value(chunks, token):
    # Values at the start, the end, side by side with Hangul: anywhere at all
    # (base64 needs 2 bytes between two values: a separator of 3 here).
    text = f"{MARK}...".join(chunks) if len(chunks) > 1 else chunks[0] + MARK
    values = {"token": token.encode()}
    for part in (mime.quoted_printable(text, MARKS), mime.base64(text, MARKS)):
        assert decode(part, values) == expected(text, token), part.cte
        check_lines(part, values)
    try:
        part = mime.eight_bit(text, MARKS, LONGEST)
    except ValueError:
        widest = text.replace(MARK, "x" * 364)
        assert max(len(line.encode()) for line in widest.split("\n")) >= 998
    else:
        assert decode(part, values) == expected(text, token)
        check_lines(part, values)


@pytest.mark.parametrize("length", range(1, 7))
@pytest.mark.parametrize("before", range(0, 5))
def test_base64_splices_every_length_at_every_alignment(length, before):
    # The three variants of the text after a value: each is used by some length.
    text = "가" * before + "a" * before + f"href={MARK}\n" + "나머지 text " * 9 + MARK + "."
    part = mime.base64(text, MARKS)
    token = "Tk." * length
    assert decode(part, {"token": token.encode()}) == expected(text, token)
    check_lines(part, {"token": token.encode()})


@pytest.mark.parametrize("text", ["", "a", "ab", "abc", "가", "가나다 text\n" * 20])
def test_base64_without_values_is_the_whole_text(text):
    part = mime.base64(text, {})
    assert decode(part, {}) == text.replace("\n", "\r\n").encode()
    check_lines(part, {})


def test_base64_values_too_close_are_refused():
    with pytest.raises(ValueError, match="too close"):
        mime.base64(f"a{MARK}b{MARK}c", MARKS)


def test_quoted_printable_keeps_the_value_on_its_own_soft_broken_lines():
    text = "가" * 30 + "=" + MARK + " tail\n" + "é" * 50
    part = mime.quoted_printable(text, MARKS)
    token = "T" * 200
    data = part.fill({"token": token.encode()})
    assert b"=\r\n" + b"T" * 75 + b"=\r\n" in data
    assert decode(part, {"token": token.encode()}) == expected(text, token)


def test_eight_bit_needs_lines_under_998_octets_with_the_longest_value():
    line = "가" * 200  # 600 octets
    assert mime.eight_bit(f"{line} {MARK}", MARKS, {"token": b"x" * 300}).cte == "8bit"
    with pytest.raises(ValueError):
        mime.eight_bit(f"{line} {MARK}", MARKS, {"token": b"x" * 400})


def test_eight_bit_lines_stop_at_997_octets_with_the_longest_value():
    # RFC 5322 2.1.1: at most 998 octets before the CRLF; 8bit keeps one under it.
    longest = {"token": b"x" * 300}
    part = mime.eight_bit("가" * 200 + "a" * 97 + MARK + "\nnext", MARKS, longest)
    assert max(map(len, part.fill(longest).split(b"\r\n"))) == 997
    with pytest.raises(ValueError, match=r"^a line reaches 998 octets$"):
        mime.eight_bit("가" * 200 + "a" * 98 + MARK + "\nnext", MARKS, longest)


def test_an_encoded_part_is_a_frozen_value_all_the_way_down():
    # Encoded once per edition and shared by every recipient's message.
    text = "가나다 " * 30 + MARK + " 끝"
    for part in (
        mime.eight_bit(text, MARKS, LONGEST),
        mime.quoted_printable(text, MARKS),
        mime.base64(text, MARKS),
        mime.eight_bit(text, MARKS, LONGEST).dot_stuffed(),
    ):
        assert hash(part) == hash(dataclasses.replace(part))
        (splice,) = [piece for piece in part.pieces if not isinstance(piece, bytes)]
        with pytest.raises(dataclasses.FrozenInstanceError):
            splice.names = ("other",)  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            part.cte = mime.BASE64  # type: ignore[misc]


def test_the_choice_is_the_smallest_valid_encoding():
    korean = "한국어 코멘트가 길게 이어집니다.\n" * 200 + MARK
    english = "An English abstract goes on and on.\n" * 200 + MARK
    for text in (korean, english):
        assert mime.encode_part(text, MARKS, LONGEST, eightbit=True).cte == "8bit"
    # Without 8BITMIME: base64 for Hangul (4 bytes per syllable against 9),
    # quoted-printable for English (about 1 byte per byte against 4/3).
    assert mime.encode_part(korean, MARKS, LONGEST, eightbit=False).cte == "base64"
    assert mime.encode_part(english, MARKS, LONGEST, eightbit=False).cte == "quoted-printable"
    # A line too long for 8bit: the smaller 7-bit form, even to an 8BITMIME relay.
    long_line = "가" * 400 + MARK
    assert mime.encode_part(long_line, MARKS, LONGEST, eightbit=True).cte == "base64"
    for text in (korean, english, long_line):
        sizes = {
            part.cte: len(part.fill(LONGEST))
            for part in (mime.quoted_printable(text, MARKS), mime.base64(text, MARKS))
        }
        chosen = mime.encode_part(text, MARKS, LONGEST, eightbit=False)
        assert len(chosen.fill(LONGEST)) == min(sizes.values())


def test_dot_stuffing_is_done_once_and_survives_the_values():
    text = ".starts with a dot\n" + "a " * 40 + MARK + "\n.again\n"
    for part in (
        mime.eight_bit(text, MARKS, LONGEST),
        mime.quoted_printable(text, MARKS),
        mime.base64(text, MARKS),
    ):
        stuffed = part.dot_stuffed()
        # A token with dots, folded by quoted-printable so that a line starts with one.
        token = ("." + "t" * 74) * 3
        # The part starts a line (after its headers' blank line), as in a message.
        data = b"\r\n" + stuffed.fill({"token": token.encode()})
        unstuffed = data.replace(b"\r\n..", b"\r\n.")  # what the server does
        assert unstuffed == b"\r\n" + part.fill({"token": token.encode()})
        assert b"\r\n." not in data.replace(b"\r\n..", b"")
        if part.cte != mime.BASE64:
            assert data.count(b"\r\n..") >= 2

"""mail.py's header and personalisation helpers by value: tokens, addresses,
header encoding, Message-IDs, the token slot; and mime.py's quoted-printable
folding and splicing at its edges (the rest of the message is in test_mail.py,
the encodings as a whole in test_mime.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from newsletter import mime
from newsletter.headers import (
    MAX_ADDRESS,
    Address,
    check_address,
    encode_mailbox,
    encode_text_header,
    list_id_header,
    message_id,
    one_line,
)
from newsletter.mail import MAX_TOKEN
from newsletter.tokens import sign_token, verify_token

KEY = b"k"


@pytest.mark.parametrize("length", range(1, 40))
def test_tokens_round_trip_for_every_payload_length(length):
    # Every base64 padding case (and payloads ending in any letter) comes back.
    for address in ("x" * length, "김" * length, f"{'X' * length}@example.org"):
        token = sign_token(KEY, "unsubscribe", address)
        assert "=" not in token
        assert verify_token(KEY, "unsubscribe", token) == address


def test_token_payload_and_mac_ending_in_any_letter_round_trip():
    import string

    # Every last character, at every length modulo 3: the base64 payload then
    # ends in every letter of its alphabet that can come last ('X', 'W', ...).
    addresses = [
        f"{local}@b.c{last}"
        for local in ("a", "ab", "abc")
        for last in string.ascii_letters + string.digits + "갗김"
    ]
    addresses += [f"user{i}@example.org" for i in range(300)]
    for address in addresses:
        assert verify_token(KEY, "unsubscribe", sign_token(KEY, "unsubscribe", address)) == address


@pytest.mark.parametrize(
    "token",
    ["", ".", "abc", "abc.", ".abc", "a.b.c", "김.abc", "abc.김"],
)
def test_malformed_tokens_verify_to_none(token):
    assert verify_token(KEY, "unsubscribe", token) is None


def test_a_token_for_the_empty_address_is_refused():
    assert verify_token(KEY, "unsubscribe", sign_token(KEY, "unsubscribe", "")) is None


def test_a_well_signed_payload_that_is_not_utf8_is_refused():
    import base64
    import hashlib
    import hmac

    payload = base64.urlsafe_b64encode(b"\xff\xfe").rstrip(b"=").decode()
    mac = hmac.new(KEY, f"unsubscribe\0{payload}".encode(), hashlib.sha256).digest()[:18]
    token = f"{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert verify_token(KEY, "unsubscribe", token) is None


# --- addresses -----------------------------------------------------------------------


def test_check_address_keeps_the_address_and_makes_an_ascii_envelope():
    assert check_address("Kim@Example.org") == Address(
        "Kim@Example.org", "Kim@Example.org", smtputf8=False
    )
    assert check_address("김@한국.kr") == Address("김@한국.kr", "김@xn--3e0b707e.kr", True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        check_address("a@example.org").envelope = "b@example.org"  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad",
    [
        "no-at-sign",
        "@example.org",
        "local@",
        "a b@example.org",
        "a@example.org>",
        "<a@example.org",
        "a@example.org\r\nBcc: x@evil.org",
        "a\x85@example.org",
        "a\u2028@example.org",
        'a"b@example.org',
        "a,b@example.org",
    ],
)
def test_unsafe_addresses_are_refused_by_name(bad):
    with pytest.raises(ValueError) as error:
        check_address(bad)
    assert str(error.value) == f"unsafe or malformed address {bad!r}"


def test_the_longest_address_is_254_octets_counted_in_utf8():
    # RFC 5321 4.5.3.1.3: a path is at most 256 octets with its angle brackets.
    domain = "@example.org"
    assert check_address("a" * (MAX_ADDRESS - len(domain)) + domain).display.endswith(domain)
    korean = "김" * 80 + "aa" + domain  # 3 octets a syllable: 254 octets, 94 characters
    assert len(korean.encode()) == MAX_ADDRESS == 254
    assert check_address(korean).smtputf8
    for bad in ("a" * (MAX_ADDRESS + 1 - len(domain)) + domain, "김" * 81 + domain):
        with pytest.raises(ValueError) as error:
            check_address(bad)
        assert str(error.value) == f"address {bad[:60]!r}... is longer than 254 octets"


def test_a_lone_surrogate_is_refused_by_name():
    # Not encodable in UTF-8: it could never be written into a header.
    for bad in ("a\ud800@example.org", "a@example.org\udfff"):
        with pytest.raises(ValueError) as error:
            check_address(bad)
        assert str(error.value) == f"unsafe or malformed address {bad!r}"


@pytest.mark.parametrize(
    "bad", ["=?utf-8?q?x?=@example.org", "a=?b?=@example.org", "a=?b=?q?c?=@example.org"]
)
def test_an_encoded_word_in_the_local_part_is_refused_by_name(bad):
    # RFC 2047 section 5: never decoded, so never where a reader could see it decoded.
    with pytest.raises(ValueError) as error:
        check_address(bad)
    assert str(error.value) == f"address {bad!r} holds an RFC 2047 encoded-word"


@pytest.mark.parametrize("good", ["a=?b@example.org", "a?=b@example.org", "a?=b=?c@example.org"])
def test_half_an_encoded_word_is_an_ordinary_address(good):
    assert check_address(good) == Address(good, good, smtputf8=False)


def test_an_invalid_international_domain_is_refused_by_name():
    bad = "a@" + "한" * 70 + ".kr"  # an IDNA label longer than 63 octets
    with pytest.raises(ValueError) as error:
        check_address(bad)
    assert str(error.value) == f"address {bad!r} has an invalid domain"


# --- headers --------------------------------------------------------------------------


def test_one_line_turns_every_control_run_into_one_space():
    assert one_line(" a\r\n\tb\x00c\x85d\u2028e\u2029  f ") == "a b c d e f"
    assert one_line("") == ""


def test_encode_text_header_ascii_korean_and_lookalike_encoded_words():
    assert encode_text_header("Subject", "Hello\r\nBcc: x") == b"Subject: Hello Bcc: x"
    assert encode_text_header("Subject", "논문") == b"Subject: =?utf-8?b?64W866y4?="
    # Text that merely looks like an encoded word is encoded, so it shows as typed.
    assert encode_text_header("Subject", "=?utf-8?q?x?=") == (
        b"Subject: =?utf-8?b?PT91dGYtOD9xP3g/PQ==?="
    )
    # Folded at 78 characters (RFC 5322's recommended limit), not one more.
    words = " ".join(["ww", "x" * 13] * 8)
    assert encode_text_header("Subject", words) == (
        b"Subject: "
        + " ".join(["ww", "x" * 13] * 4).encode()
        + b"\r\n "
        + " ".join(["ww", "x" * 13] * 4).encode()
    )
    long = encode_text_header("Subject", "word " * 30)
    assert all(len(line) <= 78 for line in long.split(b"\r\n"))
    assert b"\r\n " in long  # folded, continuation lines start with a space


def test_list_id_header_encodes_only_the_description():
    assert list_id_header("ML <Papers>", "ko.example.org") == b"List-Id: ML Papers <ko.example.org>"
    assert list_id_header("논문", "ko.example.org") == (
        b"List-Id: =?utf-8?b?64W866y4?= <ko.example.org>"
    )


def test_encode_mailbox_names_cut_and_addresses():
    ascii_address = check_address("a@example.org")
    assert encode_mailbox("", ascii_address) == b"a@example.org"
    # One line, and quoted: the colon is special in a header (RFC 5322).
    assert encode_mailbox("Kim\r\nBcc: x", ascii_address) == b'"Kim Bcc: x" <a@example.org>'
    assert encode_mailbox("N" * 150, ascii_address) == b"N" * 100 + b" <a@example.org>"
    utf8 = check_address("김@example.kr")
    assert encode_mailbox("", utf8) == "김@example.kr".encode()
    assert encode_mailbox("Kim", utf8) == "Kim <김@example.kr>".encode()


def test_message_id_is_per_date_edition_and_address_case_insensitive():
    date = dt.date(2025, 4, 4)
    one = message_id(date, "ko", "Kim@Example.org", "example.org")
    assert one == message_id(date, "ko", "kim@example.org", "example.org")
    assert one.startswith("<20250404.ko.") and one.endswith("@example.org>")
    assert len(one) == len("<20250404.ko.") + 20 + len("@example.org>")
    others = {
        message_id(date, "en", "kim@example.org", "example.org"),
        message_id(date + dt.timedelta(days=1), "ko", "kim@example.org", "example.org"),
        message_id(date, "ko", "lee@example.org", "example.org"),
    }
    assert one not in others and len(others) == 3


def test_qp_fold_soft_breaks_every_75_characters():
    assert mime.qp_fold(b"") == b""
    assert mime.qp_fold(b"a" * 75) == b"a" * 75
    assert mime.qp_fold(b"a" * 76) == b"a" * 75 + b"=\r\n" + b"a"
    assert mime.qp_fold(b"b" * 151) == b"=\r\n".join([b"b" * 75, b"b" * 75, b"b"])


# --- quoted-printable with values spliced in --------------------------------------------


def test_soft_end_makes_room_for_a_soft_break_on_the_last_line():
    soft_end = mime._soft_end
    assert soft_end(b"") == b""
    assert soft_end(b"a" * 75) == b"a" * 75  # room left for '='
    assert soft_end(b"a" * 76) == b"a" * 75 + b"=\n" + b"a"
    # Only the last line is looked at.
    assert soft_end(b"b" * 80 + b"=\n" + b"a" * 76) == b"b" * 80 + b"=\n" + b"a" * 75 + b"=\na"
    assert soft_end(b"b" * 80 + b"\n" + b"a" * 75) == b"b" * 80 + b"\n" + b"a" * 75
    # Never between '=' and its two hex digits.
    assert soft_end(b"a" * 74 + b"=C3") == b"a" * 74 + b"=\n=C3"
    assert soft_end(b"a" * 73 + b"=C3bb") == b"a" * 73 + b"=\n=C3bb"
    assert soft_end(b"a" * 72 + b"=C3bbb") == b"a" * 72 + b"=C3=\nbbb"


SLOT = "@@TOKEN@@"


@pytest.mark.parametrize("length", range(60, 240, 7))
def test_qp_puts_the_value_alone_on_its_lines_at_every_offset(length):
    # (Decoding and line lengths for any text: test_mime.py.) Here the value
    # follows text of every length, so _soft_end meets every kind of last line.
    text = ("가나다 abc=é " * 40)[:length] + SLOT + " 끝" * (length % 5)
    part = mime.quoted_printable(text, {SLOT: "token"})
    encoded = part.fill({"token": SLOT.encode()})
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
    assert b"=\r\n" + SLOT.encode() + b"=\r\n" in encoded  # the value on a line of its own


def test_qp_without_values_is_plain_quoted_printable_with_crlf_lines():
    import binascii

    text = ("가나다 abc=é " * 40) + "\n" + "x" * 100
    part = mime.quoted_printable(text, {})
    expected = binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    assert part.pieces == (expected,)
    assert mime.quoted_printable("a\r\nb\rc\n", {}).fill({}) == b"a\r\nb\r\nc\r\n"


def test_qp_with_two_values_puts_each_alone_on_its_line():
    part = mime.quoted_printable("a @@ONE@@ b @@TWO@@ c", {"@@ONE@@": "one", "@@TWO@@": "two"})
    encoded = part.fill({"one": b"@@ONE@@", "two": b"@@TWO@@"})
    # A space before a soft break is encoded (=20): trailing spaces may be lost.
    assert encoded == b"a=20=\r\n@@ONE@@=\r\n b=20=\r\n@@TWO@@=\r\n c"


# --- personalising, and the SMTP (dot-stuffed) form of an edition ------------------


NOW = dt.datetime(2025, 4, 4, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))


@pytest.fixture(scope="module")
def both_edition(tmp_path_factory):
    from smtp_servers import mail_config, sample_digest

    from newsletter.mail import build_edition_email
    from newsletter.model import Edition

    config = mail_config(tmp_path_factory.mktemp("mail"))
    return build_edition_email(config, sample_digest(), Edition.BOTH, now=NOW)


@pytest.mark.parametrize("eightbit", [True, False], ids=["8bit", "7bit"])
def test_the_smtp_form_is_the_message_dot_stuffed_token_included(both_edition, eightbit):
    message = both_edition
    assert message.dot_stuffed is False
    smtp = message.for_smtp()
    assert smtp.dot_stuffed is True and message.dot_stuffed is False  # a copy
    # A token whose quoted-printable folding starts a line with '.', and one that does not.
    for token in ("a" * 75 + ".b" + "c" * 80, "t0k3n"):
        plain = message.personalise("kim@example.org", "Kim", token, eightbit=eightbit)
        stuffed = smtp.personalise("kim@example.org", "Kim", token, eightbit=eightbit)
        assert b"\r\n." in plain  # the CSS has lines starting with '.'
        assert stuffed == plain.replace(b"\n.", b"\n..")
    folded = smtp.personalise("k@example.org", "", "a" * 75 + ".b", eightbit=eightbit)
    # Quoted-printable (both parts of the 7-bit form here) folds the token so that
    # a line starts with its '.'; 8bit keeps it inside its line.
    assert smtp.sevenbit.encodings == ("quoted-printable", "quoted-printable")
    assert (b"\r\n..b" in folded) is not eightbit


def test_an_edition_email_is_a_frozen_value_and_8bit_by_default(both_edition):
    # One per edition, shared by every recipient's personalise.
    with pytest.raises(dataclasses.FrozenInstanceError):
        both_edition.subject = "other"  # type: ignore[misc]
    default = both_edition.personalise("kim@example.org", "Kim", "t0k3n")
    assert default == both_edition.personalise("kim@example.org", "Kim", "t0k3n", eightbit=True)
    assert default != both_edition.personalise("kim@example.org", "Kim", "t0k3n", eightbit=False)


def test_a_token_that_is_not_url_safe_is_refused(both_edition):
    message = both_edition
    for bad in ("", "a b", "tok\r\nX: y", "김", "a=b", "a/b", "x" * (MAX_TOKEN + 1)):
        with pytest.raises(ValueError, match=r"^unsubscribe token must be URL-safe ASCII$"):
            message.personalise("kim@example.org", "", bad)
    # The longest token there is (that of the longest address) goes in whole.
    longest = "x" * MAX_TOKEN
    assert longest.encode() in message.personalise("kim@example.org", "", longest)
    assert len(sign_token(KEY, "unsubscribe", "x" * 64 + "@" + "a" * (MAX_ADDRESS - 65))) == (
        MAX_TOKEN
    )

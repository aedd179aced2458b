"""Edition emails: render once, encode once, personalise by byte substitution.

An edition's complete MIME message (headers, text/plain, CSS-inlined
text/html) is built ONCE with ASCII placeholders where per-recipient values go
(To, Message-ID, unsubscribe token). Per recipient, `EditionEmail.personalise`
only splices those values into the prebuilt, already-encoded bytes: a few
microseconds instead of the ~5 ms an `EmailMessage` costs to build and
serialise.

Each edition is built in two wire forms: for a relay that advertises 8BITMIME
(RFC 6152; the file transport writes this form too) each part goes as 8bit
when its lines allow, otherwise as the smaller of quoted-printable and base64
(`newsletter.mime`). In each form the HTML part as transmitted stays within
`email.max_bytes` (`newsletter.mail_size`): Gmail clips an HTML part past
about 102 KB, hiding the footer with the unsubscribe link.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING

from newsletter import mime
from newsletter.errors import NewsletterError
from newsletter.headers import (
    MAX_ADDRESS,
    check_address,
    encode_mailbox,
    encode_text_header,
    list_id_header,
    message_id,
    one_line,
)
from newsletter.letters import Letter
from newsletter.mail_layout import Bodies, Cut, render_bodies
from newsletter.mail_size import DoesNotFit, fit, ladder
from newsletter.model import Digest, Edition, IssueId, Week
from newsletter.render import format_date, format_span, paper_count
from newsletter.tokens import DEV_SECRET

if TYPE_CHECKING:
    from newsletter.config import Config

log = logging.getLogger("newsletter")

# The longest unsubscribe token (of the longest address): the size guard
# measures every edition with it.
MAX_TOKEN = -(-MAX_ADDRESS * 4 // 3) + 1 + 24


def unsubscribe_url(config: Config, token: str) -> str:
    return f"{config.server.public_url}unsubscribe?token={token}"


def preferences_url(config: Config, token: str) -> str:
    """The preferences link (token: the unsubscribe token of the address)."""
    return f"{config.server.public_url}preferences?token={token}"


def unsubscribe_mailto(config: Config, token: str) -> str:
    """The List-Unsubscribe mailto: its Subject carries the signed unsubscribe token,
    so `newsletter bounces process` can act on it and nobody can forge one for
    someone else. It goes to email.unsubscribe_mailto, else the bounce mailbox
    (email.bounce_address), else the sender."""
    email = config.email
    address = email.unsubscribe_mailto or email.bounce_address or email.sender_address
    address = address.removeprefix("mailto:").partition("?")[0]
    return f"mailto:{address}?subject=unsubscribe%20{token}"


def resolve_secret(config: Config, *, smtp: bool) -> bytes:
    """$NEWSLETTER_SECRET; required for real mail, a logged dev fallback for files."""
    if smtp:
        secret = config.secret(required=True)
        assert secret is not None
        return secret
    secret = config.secret(required=False)
    if secret is None:
        log.warning(
            "$NEWSLETTER_SECRET is not set: unsubscribe links in the outbox are signed "
            "with a fixed development key (set it before sending real mail)"
        )
        return DEV_SECRET
    return secret


def subject_for(config: Config, letter: Letter, edition: Edition, *, test: bool = False) -> str:
    """The edition's subject: email.subject with {date}, {count} and {papers}
    (the count with its noun, plural by CLDR rules: '1 paper', '논문 3편'), the
    count being the papers this letter holds (a reader's topics: only theirs).
    A weekly letter takes email.weekly_subject, {date} its days, {week} its week."""
    if isinstance(letter.issue, Week) and letter.span is not None:
        template = config.email.weekly_subject[edition]
        subject = template.format(
            date=format_span(*letter.span, edition.language),
            count=letter.count,
            papers=paper_count(letter.count, edition.language),
            week=letter.issue.isoformat(),
        )
    else:
        subject = subject_text(config, edition, letter.days[0].date, letter.count)
    return one_line(("[TEST] " if test else "") + subject)


def subject_text(config: Config, edition: Edition, date: dt.date, count: int) -> str:
    """email.subject of an edition filled in for `count` papers on `date`."""
    return config.email.subject[edition].format(
        date=format_date(date, edition.language),
        count=count,
        papers=paper_count(count, edition.language),
    )


# --- the prebuilt message ----------------------------------------------------


@dataclass(frozen=True)
class Wire:
    """One edition encoded for one kind of relay.

    `pieces` are literal bytes (final: CRLF, encoded headers and bodies) and
    `mime` splices for the per-recipient values; `cut` is what the size
    guard kept; `html_bytes` the HTML part's body as transmitted with the
    longest personal values; `encodings` the text and HTML parts'
    Content-Transfer-Encoding.
    """

    pieces: tuple[mime.Piece, ...]
    cut: Cut
    html_bytes: int
    encodings: tuple[str, str]

    def fill(self, values: Mapping[str, bytes]) -> bytes:
        return mime.fill(self.pieces, values)

    def dot_stuffed(self) -> Wire:
        return Wire(mime.dot_stuffed(self.pieces), self.cut, self.html_bytes, self.encodings)


@dataclass(frozen=True)
class EditionEmail:
    """One edition's encoded message, in two wire forms, with per-recipient slots.

    `eightbit` is for a relay that advertises 8BITMIME (and the file
    transport), `sevenbit` for one that does not; `personalise` fills one.
    """

    issue: IssueId  # a date, or the Week of a weekly email
    edition: Edition
    subject: str
    eightbit: Wire
    sevenbit: Wire
    sender_domain: str
    public_url: str
    shortened: bool  # the size guard gave up content (in the 8bit form)
    # Lines starting with '.' doubled, as SMTP's DATA wants (see for_smtp).
    dot_stuffed: bool = False

    def for_smtp(self) -> EditionEmail:
        """This message dot-stuffed for SMTP DATA (RFC 5321 4.5.2), once per edition.

        The CSS in the HTML part has lines starting with '.': stuffing every
        message (smtplib's regex) cost ~200 us per 30 KB message, more than all
        the other per-recipient work. Literal parts are stuffed here; of the
        values only a folded quoted-printable token can start a line.
        Send the result with SmtpTransport.send(..., dot_stuffed=True).
        """
        return dataclasses.replace(
            self,
            eightbit=self.eightbit.dot_stuffed(),
            sevenbit=self.sevenbit.dot_stuffed(),
            dot_stuffed=True,
        )

    def personalise(
        self,
        address: str,
        name: str,
        token: str,
        msgid: str | None = None,
        *,
        eightbit: bool = True,
    ) -> bytes:
        """The complete message for one recipient (ValueError for an unsafe address).

        `msgid` (e.g. from `email.utils.make_msgid`) replaces the delivery's
        deterministic `message_id`: a message that is not that delivery (a test
        copy) must not share its id (RFC 5322 3.6.4: unique per message).
        `eightbit`: the relay advertises 8BITMIME (RFC 6152; the file transport: True).
        """
        checked = check_address(address)
        values = {
            "to": encode_mailbox(name, checked),
            "msgid": (
                msgid
                or message_id(self.issue, self.edition.value, checked.display, self.sender_domain)
            ).encode("ascii"),
            "token": _check_token(token).encode("ascii"),
        }
        return (self.eightbit if eightbit else self.sevenbit).fill(values)


_TOKEN = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MAX_TOKEN}}}")


def _check_token(token: str) -> str:
    if not _TOKEN.fullmatch(token):
        raise ValueError("unsubscribe token must be URL-safe ASCII")
    return token


def build_edition_email(
    config: Config,
    digest: Digest,
    edition: Edition,
    *,
    now: dt.datetime | None = None,
    test: bool = False,
) -> EditionEmail:
    """`build_email` of a day's whole issue (`Letter.daily`)."""
    return build_email(config, Letter.daily(digest), edition, now=now, test=test)


def build_email(
    config: Config,
    letter: Letter,
    edition: Edition,
    *,
    now: dt.datetime | None = None,
    test: bool = False,
    topics: bool = False,
) -> EditionEmail:
    """Render, inline and encode one edition of a letter (a day's issue or a
    week's, every paper or a reader's topics), in both wire forms, each within
    email.max_bytes (`mail_size`: content is given up, cheapest first, with a
    warning naming the issue and edition). `topics`: the letter holds only a
    reader's topics, and its footer says so.

    NewsletterError naming the issue and edition if not even one paper fits.
    """
    now = now or dt.datetime.now(config.site.tz)
    builder = _Builder(config, letter, edition, now=now, test=test, topics=topics)
    name = letter.issue.isoformat()
    limit = config.email.max_bytes
    wires = {}
    for eightbit in (True, False):

        def measure(cut: Cut, eightbit: bool = eightbit) -> int:
            return builder.html_bytes(cut, eightbit)

        def guess(cut: Cut, limit: int, eightbit: bool = eightbit) -> int | None:
            return builder.papers_that_fit(cut, eightbit, limit)

        try:
            cut = fit(
                measure,
                papers=letter.count,
                abstract_chars=config.email.abstract_chars,
                limit=limit,
                guess=guess,
            )
        except DoesNotFit as exc:
            relay = "" if eightbit else " (for a relay without 8BITMIME)"
            raise NewsletterError(
                f"{name} {edition.value} edition: not even one paper fits "
                f"in email.max_bytes {limit:,}{relay}: the first paper alone, with its "
                f"abstract hidden and comments shortened, makes an HTML part of "
                f"{exc.size:,} bytes",
                hint="raise email.max_bytes, or shorten that paper's title, authors or tags",
            ) from None
        wires[eightbit] = builder.wire(cut, eightbit)
    first = ladder(config.email.abstract_chars)[0]
    for eightbit, wire in wires.items():
        if wire.cut == first or (not eightbit and wire.cut == wires[True].cut):
            continue
        log.warning(
            "%s %s edition%s: %s make an HTML part of %s bytes, over email.max_bytes %s; "
            "sending %s (%s bytes)",
            name,
            edition.value,
            "" if eightbit else " (for a relay without 8BITMIME)",
            paper_count(letter.count, "en"),
            f"{builder.html_bytes(first, eightbit):,}",
            f"{limit:,}",
            wire.cut.describe(first.abstract),
            f"{wire.html_bytes:,}",
        )
    return EditionEmail(
        issue=letter.issue,
        edition=edition,
        subject=builder.subject,
        eightbit=wires[True],
        sevenbit=wires[False],
        sender_domain=config.email.sender_domain,
        public_url=str(config.server.public_url),
        shortened=wires[True].cut != first,
    )


class _Builder:
    """Renders an edition at any `Cut` (each once) and encodes it per wire form."""

    SLOTS = ("to", "msgid", "token")

    def __init__(
        self,
        config: Config,
        letter: Letter,
        edition: Edition,
        *,
        now: dt.datetime,
        test: bool,
        topics: bool = False,
    ) -> None:
        self.config = config
        self.letter = letter
        self.edition = edition
        self.now = now
        self.topics = topics
        self.subject = subject_for(config, letter, edition, test=test)
        # Derived from the content, so two builds of the same issue are
        # byte-identical; a digest cannot contain the marker, since it would
        # have to contain its own hash.
        nonce = hashlib.sha256(repr((letter, edition.value, test)).encode()).hexdigest()[:12]
        self.marks = {name: f"NLSLOT{nonce.upper()}{name.upper()}X" for name in self.SLOTS}
        self.longest = {"token": b"x" * MAX_TOKEN}
        self._bodies: dict[Cut, Bodies] = {}
        self._parts: dict[tuple[Cut, bool], tuple[mime.EncodedPart, mime.EncodedPart]] = {}

    def bodies(self, cut: Cut) -> Bodies:
        if cut not in self._bodies:
            token = self.marks["token"]
            self._bodies[cut] = render_bodies(
                self.config,
                self.letter,
                self.edition,
                subject=self.subject,
                unsubscribe=unsubscribe_url(self.config, token),
                preferences=preferences_url(self.config, token),
                cut=cut,
                topics=self.topics,
            )
        return self._bodies[cut]

    def parts(self, cut: Cut, eightbit: bool) -> tuple[mime.EncodedPart, mime.EncodedPart]:
        key = (cut, eightbit)
        if key not in self._parts:
            bodies = self.bodies(cut)
            body_marks = {self.marks["token"]: "token"}
            self._parts[key] = (
                mime.encode_part(bodies.text, body_marks, self.longest, eightbit=eightbit),
                mime.encode_part(bodies.html, body_marks, self.longest, eightbit=eightbit),
            )
        return self._parts[key]

    def html_bytes(self, cut: Cut, eightbit: bool) -> int:
        """The HTML part's body as transmitted, with the longest personal values."""
        return len(self.parts(cut, eightbit)[1].fill(self.longest))

    # Where each paper's block and the footer start in a rendered HTML body.
    _ENTRY = '<tr><td class="entry"'
    _FOOTER = '<tr><td class="footer"'
    _MORE_ROW = 600  # bytes of the "M more papers on the web" row, about

    def papers_that_fit(self, content: Cut, eightbit: bool, limit: int) -> int | None:
        """About how many papers fit with `content`, from the sizes of the paper
        blocks in its render with every paper (incremental measurement: no new
        render). None if the template's blocks cannot be told apart."""
        html = self.bodies(content).html
        starts = _positions(html, self._ENTRY)
        footer = html.find(self._FOOTER)
        if len(starts) != self.letter.count or footer < 0 or not starts:
            return None
        ratio = self.html_bytes(content, eightbit) / len(html.encode())
        size = len(html[: starts[0]].encode()) + len(html[footer:].encode()) + self._MORE_ROW
        count = 0
        for start, end in zip(starts, [*starts[1:], footer], strict=True):
            size += len(html[start:end].encode())
            if size * ratio > limit:
                break
            count += 1
        return count

    def wire(self, cut: Cut, eightbit: bool) -> Wire:
        text, html = self.parts(cut, eightbit)
        literal = text.fill(self.longest) + html.fill(self.longest)
        boundary = "=_nl_" + hashlib.sha256(literal).hexdigest()[:24]
        pieces: list[mime.Piece] = [*self._headers(boundary, text, html), mime.CRLF]
        pieces.append(b"This is a multipart message in MIME format.\r\n")
        for subtype, part in (("plain", text), ("html", html)):
            pieces.append(
                f"\r\n--{boundary}\r\n"
                f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
                f"Content-Transfer-Encoding: {part.cte}\r\n\r\n".encode()
            )
            pieces += part.pieces
        pieces.append(f"\r\n--{boundary}--\r\n".encode())
        merged: list[mime.Piece] = []
        for piece in pieces:  # adjacent literals as one: fewer pieces per recipient
            if isinstance(piece, bytes) and merged and isinstance(merged[-1], bytes):
                merged[-1] += piece
            else:
                merged.append(piece)
        return Wire(
            tuple(merged),
            cut,
            self.html_bytes(cut, eightbit),
            (text.cte, html.cte),
        )

    def _headers(
        self, boundary: str, text: mime.EncodedPart, html: mime.EncodedPart
    ) -> list[mime.Piece]:
        config, marks = self.config, self.marks
        sender_name, sender = parseaddr(config.email.from_)
        headers = [
            b"From: " + encode_mailbox(sender_name, check_address(sender)),
            b"To: " + marks["to"].encode(),
            encode_text_header("Subject", self.subject),
            f"Date: {format_datetime(self.now)}".encode(),
            b"Message-ID: " + marks["msgid"].encode(),
            list_id_header(config.site.title, f"{self.edition.value}.{config.email.sender_domain}"),
            f"List-Unsubscribe: <{unsubscribe_url(config, marks['token'])}>,\r\n"
            f" <{unsubscribe_mailto(config, marks['token'])}>".encode(),
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        ]
        if config.email.reply_to:
            reply_name, reply = parseaddr(config.email.reply_to)
            headers.append(b"Reply-To: " + encode_mailbox(reply_name, check_address(reply)))
        headers += [
            b"MIME-Version: 1.0",
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"'.encode(),
        ]
        if mime.EIGHT_BIT in (text.cte, html.cte):
            headers.append(b"Content-Transfer-Encoding: 8bit")
        # RFC 3282: the languages of the content; `both` is Korean and English.
        languages = "ko, en" if self.edition is Edition.BOTH else self.edition.language
        headers.append(f"Content-Language: {languages}".encode())
        data = b"\r\n".join(headers) + mime.CRLF
        pattern = re.compile(b"(" + b"|".join(m.encode() for m in marks.values()) + b")")
        by_mark = {mark.encode(): name for name, mark in marks.items()}
        return [
            mime.Value(by_mark[piece]) if index % 2 else piece
            for index, piece in enumerate(pattern.split(data))
        ]


def _positions(text: str, needle: str) -> list[int]:
    out, index = [], text.find(needle)
    while index >= 0:
        out.append(index)
        index = text.find(needle, index + 1)
    return out


def check_sendable(config: Config) -> None:
    """Fail early on a sender address that cannot go into a header."""
    try:
        check_address(config.email.sender_address)
    except ValueError as exc:
        raise NewsletterError(
            f"email.from is not usable: {exc}", hint="use an address like papers@example.org"
        ) from None

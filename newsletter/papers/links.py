"""Where each paper can be read: the link values shared by lookup, cache and outputs.

A paper's link is found on arXiv (`papers.arxiv`), cached in the database
(`store.links`), or given by hand in the override file (`papers.overrides`);
`papers.linking` decides which. Outputs only ever see a `PaperLink` or
nothing: never a guess.

arXiv identifiers follow https://info.arxiv.org/help/arxiv_identifier.html:
`YYMM.NNNNN` since 2007 (`YYMM.NNNN` before 2015), `archive(.SUBJ)/YYMMNNN`
before; a trailing `vN` names a version and is dropped here, so links always
lead to the latest version.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum

ARXIV_API_URL = "https://export.arxiv.org/api/query"
ARXIV_ABS = "https://arxiv.org/abs/"
ARXIV_PDF = "https://arxiv.org/pdf/"
HF_PAPERS = "https://huggingface.co/papers/"

_NEW_ID = r"\d{4}\.\d{4,5}"
_OLD_ID = r"[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7}"
_ID = re.compile(rf"(?:arxiv:)?(?P<id>{_NEW_ID}|{_OLD_ID})(?:v\d+)?", re.IGNORECASE)
# abs, pdf and html pages on arxiv.org (any subdomain, http or https).
_ARXIV_URL = re.compile(
    rf"https?://(?:[\w-]+\.)*arxiv\.org/(?:abs|pdf|html)/(?P<id>{_NEW_ID}|{_OLD_ID})"
    r"(?:v\d+)?(?:\.pdf)?/?(?:[?#].*)?",
    re.IGNORECASE,
)


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC, to the second: the clock of retry times."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def is_public_arxiv(url: str) -> bool:
    """True for arxiv.org and its subdomains (export.arxiv.org), where 3 s
    between requests is the floor."""
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return host == "arxiv.org" or host.endswith(".arxiv.org")


def parse_arxiv_id(text: str) -> str | None:
    """The bare identifier in `text` ('2504.02807', 'arXiv:2504.02807v2',
    'hep-th/9901001v1'), version dropped; None if `text` is not exactly one."""
    match = _ID.fullmatch(text.strip())
    if not match:
        return None
    ident = match["id"]
    # Old-style archives are lower case ('hep-th'), the subject class upper ('math.GT').
    return ident if "/" not in ident else _old_style_case(ident)


def arxiv_id_from_url(url: str) -> str | None:
    """The identifier of an arxiv.org abs/pdf/html URL, version dropped; else None."""
    match = _ARXIV_URL.fullmatch(url.strip())
    if not match:
        return None
    ident = match["id"]
    return ident if "/" not in ident else _old_style_case(ident)


def _old_style_case(ident: str) -> str:
    archive, _, number = ident.partition("/")
    name, dot, subject = archive.partition(".")
    return f"{name.lower()}{dot}{subject.upper()}/{number}"


class LinkStatus(StrEnum):
    """What a lookup found: a link, a reasoned absence, or an error to retry."""

    FOUND = "found"
    NOT_FOUND = "not_found"
    FAILED = "failed"


@dataclass(frozen=True)
class PaperLink:
    """Where a paper can be read.

    `url` is what the title links to: the arXiv abstract page, or an override's
    own URL. The arXiv fields are set only when the paper is on arXiv.
    """

    url: str
    arxiv_id: str | None = None
    category: str | None = None  # the arXiv primary category, e.g. 'cs.CL'

    @classmethod
    def for_arxiv(cls, arxiv_id: str, category: str | None = None) -> PaperLink:
        """The link to an arXiv paper; `arxiv_id` may carry a version, which is dropped."""
        ident = parse_arxiv_id(arxiv_id)
        if ident is None:
            raise ValueError(f"{arxiv_id!r} is not an arXiv identifier")
        return cls(url=ARXIV_ABS + ident, arxiv_id=ident, category=category or None)

    @classmethod
    def for_url(cls, url: str) -> PaperLink:
        """A link to `url`; an arxiv.org abs/pdf URL becomes a full arXiv link."""
        ident = arxiv_id_from_url(url)
        return cls.for_arxiv(ident) if ident else cls(url=url.strip())

    @property
    def name(self) -> str:
        """How a links line names it: 'arXiv:2504.02807', else the URL's host
        ('example.org', without 'www.')."""
        if self.arxiv_id:
            return f"arXiv:{self.arxiv_id}"
        from urllib.parse import urlsplit

        host = urlsplit(self.url).hostname or self.url
        return host.removeprefix("www.")

    @property
    def abs_url(self) -> str | None:
        """https://arxiv.org/abs/ID, the paper's arXiv page."""
        return ARXIV_ABS + self.arxiv_id if self.arxiv_id else None

    @property
    def pdf_url(self) -> str | None:
        """https://arxiv.org/pdf/ID, the latest version's PDF."""
        return ARXIV_PDF + self.arxiv_id if self.arxiv_id else None

    @property
    def hf_url(self) -> str | None:
        """https://huggingface.co/papers/ID; Hugging Face knows only new-style ids."""
        if not self.arxiv_id or "/" in self.arxiv_id:
            return None
        return HF_PAPERS + self.arxiv_id


@dataclass(frozen=True)
class Lookup:
    """The outcome for one paper.

    found: `link` is set. not_found: `reason` says why (no result, a title
    that differs, other authors, or the override file said `none`). failed:
    `reason` is the error and `retry_after` (UTC) when to try again; nothing
    was learnt about the paper. `source` is 'arxiv', 'cache', 'override' or
    'off' (lookups turned off).
    """

    status: LinkStatus
    link: PaperLink | None = None
    reason: str = ""
    retry_after: dt.datetime | None = None
    source: str = "arxiv"

    def __post_init__(self) -> None:
        if (self.status is LinkStatus.FOUND) != (self.link is not None):
            raise ValueError("a found lookup has a link, and only a found one")

    @classmethod
    def found(cls, link: PaperLink, source: str = "arxiv") -> Lookup:
        return cls(LinkStatus.FOUND, link=link, source=source)

    @classmethod
    def not_found(cls, reason: str, source: str = "arxiv") -> Lookup:
        return cls(LinkStatus.NOT_FOUND, reason=reason, source=source)

    @classmethod
    def failed(cls, error: str, retry_after: dt.datetime, source: str = "arxiv") -> Lookup:
        return cls(LinkStatus.FAILED, reason=error, retry_after=retry_after, source=source)

"""Benchmark: what each edition's email weighs, and how long the size guard takes.

    .venv/bin/python bench/email_size.py [--papers 60] [--max-bytes 100000]

For every edition of the three example digests and of a generated Korean-heavy
digest (tests/big_digest.py, default 60 papers), it builds the email as
`newsletter publish` does and prints, for a relay with 8BITMIME (and the file
transport) and for one without: the HTML part's bytes as transmitted (what
email.max_bytes bounds and Gmail clips at ~102 KB), the whole message, the
parts' Content-Transfer-Encoding, what the guard kept, and the seconds to build
the edition (rendering, CSS inlining, encoding and the guard's search, both
wire forms).

Run against an older checkout (PYTHONPATH=that/checkout) it measures that
code's messages the same way, for before/after figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def html_part(data: bytes) -> tuple[int, str, str]:
    """(bytes of the HTML part's body as sent, text CTE, HTML CTE)."""
    boundary = re.search(rb'boundary="([^"]+)"', data)[1]  # type: ignore[index]
    parts = data.split(b"\r\n--" + boundary)[1:-1]
    encodings = [re.search(rb"Content-Transfer-Encoding: (\S+)", p)[1].decode() for p in parts]  # type: ignore[index]
    body = parts[1].removeprefix(b"\r\n").partition(b"\r\n\r\n")[2]
    return len(body), encodings[0], encodings[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--papers", type=int, default=60)
    # email.abstract_chars (-1: whole abstracts, as older code showed them)
    parser.add_argument("--max-bytes", type=int, default=100_000)
    parser.add_argument("--abstract-chars", type=int, default=500)
    args = parser.parse_args()

    from big_digest import big_digest

    from newsletter.config import config_from_dict
    from newsletter.digest import read_digest
    from newsletter.mail import build_edition_email
    from newsletter.model import Edition
    from newsletter.tokens import DEV_SECRET, UNSUBSCRIBE, sign_token

    raw = {
        "site": {"base_url": "https://papers.example.org/"},
        "email": {"from": "ML Papers <papers@example.org>", "max_bytes": args.max_bytes},
    }
    if args.abstract_chars != 500:  # (older code has no such key)
        raw["email"]["abstract_chars"] = args.abstract_chars
    config = config_from_dict(raw, Path(tempfile.mkdtemp(prefix="nl-size-")))
    digests = [read_digest(p).digest for p in sorted((ROOT / "examples/digests").glob("*.txt"))]
    digests.append(big_digest(args.papers))
    address = "reader@example.com"
    token = sign_token(DEV_SECRET, UNSUBSCRIBE, address)
    now = dt.datetime(2025, 6, 2, 7, tzinfo=dt.UTC)
    print(
        f"{'digest':<22} {'edition':<7} {'seconds':>7}  "
        f"{'HTML 8bit':>10} {'message':>8} {'CTE':<9}  "
        f"{'HTML 7bit':>10} {'message':>8} {'CTE':<9}  kept"
    )
    for digest in digests:
        name = f"{digest.date} ({len(digest.entries)} papers)"
        for edition in Edition:
            started = time.perf_counter()
            message = build_edition_email(config, digest, edition, now=now)
            seconds = time.perf_counter() - started
            row = [f"{name:<22} {edition.value:<7} {seconds:>7.2f}"]
            for eightbit in (True, False):
                try:
                    data = message.personalise(address, "Reader", token, eightbit=eightbit)
                except TypeError:  # older code: one quoted-printable form
                    data = message.personalise(address, "Reader", token)
                size, text_cte, html_cte = html_part(data)
                cte = "/".join(short(c) for c in (text_cte, html_cte))
                row.append(f"{size:>10,} {len(data):>8,} {cte:<9}")
            wire = getattr(message, "eightbit", None)
            configured = None if args.abstract_chars < 0 else args.abstract_chars
            kept = wire.cut.describe(configured) if wire is not None else "-"
            print("  ".join(row) + f"  {kept}")


def short(cte: str) -> str:
    return {"quoted-printable": "qp", "base64": "b64"}.get(cte, cte)


if __name__ == "__main__":
    main()

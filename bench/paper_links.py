"""Benchmark: what paper links add to every publish and build (no network).

    python bench/paper_links.py [N ...]

For each N (default 1000 and 3000): the digests of bench/build_site.py are
written as files and read back with the real parser (the reference: every
`publish` and `build` parses every digest), the link cache (SQLite in a
temporary folder) is filled with a found link for every paper, and then the
links that every run attaches to every digest are timed: `PaperLinks.open`
and `PaperLinks.offline` (a cache key per paper, one cache read in chunks).
Printed: seconds of wall and CPU time for each, microseconds per paper, and
the ratio of attaching links to parsing, from the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def timed(action):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def bench(count: int) -> None:
    from build_site import make_digests

    from newsletter.config import config_from_dict
    from newsletter.digest import check_paths, format_digest
    from newsletter.papers.attach import PaperLinks
    from newsletter.papers.links import Lookup, PaperLink
    from newsletter.papers.matching import paper_key
    from newsletter.store import Store

    digests, _ = make_digests(count)
    with tempfile.TemporaryDirectory(prefix="bench-links-") as folder:
        root = Path(folder)
        (root / "digests").mkdir()
        for digest in digests:
            (root / "digests" / f"{digest.date}.txt").write_text(format_digest(digest), "utf-8")
        config = config_from_dict({"paths": {"digests": "digests", "state": "state"}}, base=root)
        papers = sum(len(d.entries) for d in digests)
        parse, parse_cpu, reports = timed(lambda: check_paths([root / "digests"]))
        parsed = [r.digest for r in reports if r.digest is not None]
        now = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
        with Store.open(config) as store, store.db.engine.begin() as conn:
            rows = [
                {
                    "paper_key": paper_key(e.title, e.authors),
                    "title": e.title,
                    "status": "found",
                    "url": f"https://arxiv.org/abs/2501.{n:05d}",
                    "arxiv_id": f"2501.{n:05d}",
                    "category": "cs.CL",
                    "reason": "",
                    "attempts": 0,
                    "checked_at": now,
                    "retry_after": None,
                }
                for n, e in enumerate((e for d in parsed for e in d.entries), 1)
            ]
            conn.execute(store.links.table.insert(), rows)
        opened, opened_cpu, links = timed(lambda: PaperLinks.open(config))
        with links:
            attach, attach_cpu, linked = timed(lambda: links.offline(parsed))
        assert all(d.links and all(d.links) for d in linked)
        assert Lookup.found(PaperLink.for_arxiv("2501.00001")).link is not None
        print(f"{count} digests, {papers} papers (every one with a cached link)")
        print(f"  {'parse every digest (reference)':<40} {parse:7.2f} s  cpu {parse_cpu:6.2f} s")
        print(
            f"  {'open the links (override file, database)':<40} {opened:7.2f} s  "
            f"cpu {opened_cpu:6.2f} s"
        )
        print(
            f"  {'attach the known links (offline)':<40} {attach:7.2f} s  "
            f"cpu {attach_cpu:6.2f} s  {attach / papers * 1e6:5.0f} us/paper"
        )
        print(f"  {'attaching / parsing':<40} {attach / parse:7.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("counts", nargs="*", type=int, default=[1000, 3000])
    for count in parser.parse_args().counts:
        bench(count)


if __name__ == "__main__":
    main()

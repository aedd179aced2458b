"""Counts of one mutmut 2.x run, from its cache, less the listed equivalent mutants.

    python bench/mutation_report.py .mutmut-cache MODULE EQUIVALENT_FILE [--diffs MUTMUT]

A mutant is known by a key: the first 12 hex digits of sha1(module, its source
line stripped, mutmut's index on that line), stable while the line is unchanged.
EQUIVALENT_FILE has one mutant per line: `KEY  module:line  why`; '#' starts a
comment. Killed counts mutmut's "killed", "timeout" and "suspicious" (the tests
failed, or hung); skipped mutants (outside the chosen functions) are not counted.
Only surviving mutants are set aside as equivalent (a killed one is not).
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

KILLED = {"ok_killed", "bad_timeout", "ok_suspicious"}
SURVIVED = {"bad_survived"}


def key(module: str, line: str, index: int) -> str:
    return hashlib.sha1(f"{module}\n{line.strip()}\n{index}".encode()).hexdigest()[:12]


def equivalents(path: Path, module: str) -> dict[str, str]:
    found: dict[str, str] = {}
    if not path.exists():
        return found
    for raw in path.read_text(encoding="utf-8").splitlines():
        text = raw.split("#", 1)[0].strip() if raw.lstrip().startswith("#") else raw.strip()
        if not text:
            continue
        parts = text.split(None, 2)
        if len(parts) == 3 and parts[1].split(":")[0] == module:
            found[parts[0]] = parts[2]
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cache")
    parser.add_argument("module")
    parser.add_argument("equivalent")
    parser.add_argument("--functions", default="")
    parser.add_argument("--diffs", default="")
    args = parser.parse_args()
    db = sqlite3.connect(args.cache)
    rows = db.execute(
        'SELECT m.id, m.status, m."index", l.line, l.line_number FROM mutant m '
        "JOIN line l ON m.line = l.id JOIN sourcefile s ON l.sourcefile = s.id "
        'WHERE s.filename = ? ORDER BY l.line_number, m."index"',
        (args.module,),
    ).fetchall()
    listed = equivalents(Path(args.equivalent), args.module)
    counted = [r for r in rows if r[1] in KILLED | SURVIVED]
    if args.functions:  # the mutants of the chosen definitions only
        sys.path.insert(0, str(Path(__file__).parent))
        from mutmut_config import _wanted_lines

        lines = _wanted_lines(args.module, args.functions)
        rows = [r for r in rows if lines is None or r[4] in lines]
    untested = [r for r in rows if r[1] == "untested"]
    killed = sum(r[1] in KILLED for r in counted)
    survived = [r for r in counted if r[1] in SURVIVED]
    # A killed mutant is not equivalent, whatever the list says (two lines with
    # the same text share a key): only survivors are set aside.
    equivalent = [r for r in survived if key(args.module, r[3], r[2]) in listed]
    real_survivors = [r for r in survived if key(args.module, r[3], r[2]) not in listed]
    total = len(counted)
    non_eq = total - len(equivalent)
    rate = 100 * killed / total if total else 0.0
    rate_ne = 100 * killed / non_eq if non_eq else 0.0
    for r in real_survivors:
        print(f"survived {key(args.module, r[3], r[2])}  {args.module}:{r[4] + 1}  {r[3].strip()}")
        if args.diffs:
            diff = subprocess.run(
                [args.diffs, "show", str(r[0])], capture_output=True, text=True
            ).stdout
            print("".join(f"    {line}\n" for line in diff.splitlines() if line[:1] in "+-@"))
    surviving_keys = {key(args.module, r[3], r[2]) for r in survived}
    for stale in sorted(set(listed) - surviving_keys):
        print(f"note: {stale} is listed as equivalent but no such mutant survived")
    scope = f" [{args.functions}]" if args.functions else ""
    if untested:
        print(
            f"note: {len(untested)} mutants untested: mutmut 2.5 cannot record some mutants "
            "of a line whose text repeats (e.g. @dataclass(frozen=True)); or it stopped early"
        )
    print(
        f"RESULT {args.module}{scope}: {total} mutants, {killed} killed, {len(survived)} survived, "
        f"kill rate {rate:.1f} %; {len(equivalent)} equivalent, non-equivalent "
        f"{killed}/{non_eq} killed = {rate_ne:.1f} %"
    )


if __name__ == "__main__":
    main()

"""Benchmark: the archive site against Hugo and Pelican on the same N digests.

    python bench/build_site.py [N ...] [--editions ko] [--profile] [--no-peers] [--repeat 3]

For each N (default 1000): N digests are generated deterministically (fixed
seed, Hangul included), written with digest.format_digest and read back with
the real parser. Then, each in a fresh temporary folder:

- newsletter: full builds from nothing (search index timed separately), a
  rebuild with nothing changed, and publishing one new day (write_site with
  its date; the next day, and so on, for each repeat);
- Hugo (Debian `hugo`): the same digests as content pages (one page per
  digest, tags as a taxonomy, RSS on, 30 per page), built from nothing right
  after each of our full builds (the two alternate, so both meet the machine
  in the same state: a shared disk's speed swings within minutes), rebuilt,
  and built again with one more page;
- Pelican (PyPI, installed into a throw-away venv under bench/out/; skipped
  when it cannot be installed): the same as Markdown articles, tag feeds on.

Figures are seconds of wall time and the ratio of each peer to us, from the
same run on the same machine (absolute figures on a shared machine are noisy;
ratios count). Full builds and publishes run --repeat times (default 3): the
best run counts, as timeit and hyperfine's min do, and the median is shown. Peak memory is the process's maximum resident set size after
our full build (ru_maxrss) and Pagefind's (a child process). --profile prints
where our full build spends its time (cProfile, top 25 by cumulative time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from newsletter.config import config_from_dict
from newsletter.digest import check_paths, format_digest
from newsletter.model import Digest, Entry
from newsletter.site import write_site

OUT = Path(__file__).parent / "out"
WORDS = [
    *("model", "language", "training", "data", "scaling", "reasoning"),
    *("agent", "sparse", "attention", "token"),
]
HANGUL = [
    *("모델", "학습", "데이터", "추론", "성능", "방법", "결과", "실험", "구조", "효율"),
    *("개선", "제안", "모델을", "데이터가", "성능이"),
]
TAGS = [
    *["moe", "rl", "reasoning", "agent", "efficiency", "long-context", "math", "code", "gpt-4.5"],
    "추론",
    "정렬",
]
TAGS += [f"topic-{i}" for i in range(40)]


def sentence(rng: random.Random, words: list[str], count: int) -> str:
    return " ".join(rng.choice(words) for _ in range(count)).capitalize() + "."


def make_entry(rng: random.Random, number: int) -> Entry:
    return Entry(
        title=f"{sentence(rng, WORDS, 7)[:-1]} {number}",
        authors=tuple(f"Author {rng.randrange(10_000)}" for _ in range(rng.randint(2, 12))),
        abstract=" ".join(sentence(rng, WORDS, 18) for _ in range(8)),
        comment_ko=sentence(rng, HANGUL, 25) + f" (https://arxiv.org/abs/2501.{number:05d})",
        comment_en=sentence(rng, WORDS, 30),
        tags=tuple(rng.sample(TAGS, rng.randint(1, 4))),
    )


def make_digest(rng: random.Random, date: dt.date) -> Digest:
    entries = tuple(make_entry(rng, rng.randrange(100_000)) for _ in range(rng.randint(3, 8)))
    return Digest(date, entries, f"{date}.txt")


def make_digests(count: int, after: int = 1) -> tuple[list[Digest], list[Digest]]:
    """`count` digests from 2022-01-01 on, and the `after` days that follow."""
    rng = random.Random(20250404)
    start = dt.date(2022, 1, 1)
    days = [make_digest(rng, start + dt.timedelta(days=day)) for day in range(count + after)]
    return days[:count], days[count:]


REPEAT = 3  # full builds and publishes timed: the best counts (--repeat)
CPU: dict[str, float] = {}  # "last": CPU seconds of the last timed action


def _cpu(children: bool = True) -> float:
    """CPU seconds of this process and (children=True) its finished children:
    render workers, Pagefind, Hugo, Pelican."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    if children:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += kids.ru_utime + kids.ru_stime
    return total


# CPU seconds: "cpu" this process's in search.build_bundles (records and the
# service protocol); "all" the search step's whole (build._write_search:
# Pagefind's indexing in its child process, and writing the bundles' files).
SEARCH = {"cpu": 0.0, "all": 0.0}


def _measure_search() -> None:
    """Count the CPU spent on the search index (SEARCH), so that builds and
    publishing can be shown without it."""
    from newsletter.site import build, search

    original = search.build_bundles
    if getattr(original, "measured", False):
        return

    def measured(*args, **kwargs):
        began = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            SEARCH["cpu"] += time.process_time() - began

    step = build._write_search

    def measured_step(*args, **kwargs):
        began = _cpu()
        try:
            return step(*args, **kwargs)
        finally:
            SEARCH["all"] += _cpu() - began

    measured.measured = True  # type: ignore[attr-defined]
    search.build_bundles = measured
    build._write_search = measured_step


def set_aside(folder: Path) -> None:
    """Move a last build's tree out of the way (deleted with the benchmark's
    folder at the end): deleting it before a timed build made the file
    system free and discard its blocks during that build, and ours holds
    16,000 search-index files more than Hugo's."""
    if folder.exists():
        aside = folder.parent / f".aside-{folder.name}-{time.monotonic_ns()}"
        folder.rename(aside)


def settle() -> None:
    """Flush the disk before a timed full build: what the last run wrote
    would otherwise be written back during this one."""
    import os

    os.sync()


def timed(action):
    """(wall seconds, result); the action's CPU seconds go to CPU["last"]."""
    began, cpu = time.perf_counter(), _cpu()
    result = action()
    CPU["last"] = _cpu() - cpu
    return time.perf_counter() - began, result


def line(label: str, seconds: float | None, note: str = "", cpu: float | None = None) -> None:
    shown = "skipped" if seconds is None else f"{seconds:8.2f} s"
    cpu_text = "" if cpu is None else f"cpu {cpu:6.2f} s"
    print(f"  {label:<44} {shown:>10}  {cpu_text:<13} {note}")


# --- newsletter ------------------------------------------------------------------------


def bench_ours(
    root: Path,
    digests: list[Digest],
    new_day: Digest,
    more_days: list[Digest],
    editions: list[str],
    profile: bool,
    between: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Our figures; `between` runs after each full build (a peer's full build,
    so that both meet the machine in the same state: Hugo.full)."""
    folder = root / "digests"
    folder.mkdir()
    for digest in digests:
        (folder / f"{digest.date}.txt").write_text(format_digest(digest), "utf-8")
    config = config_from_dict(
        {
            "site": {"base_url": "https://example.org/papers/"},
            "paths": {"public": "public"},
            "editions": editions,
        },
        base=root,
    )

    def scan() -> list[Digest]:
        return [r.digest for r in check_paths([folder]) if r.digest is not None]

    _measure_search()
    parse, parsed = timed(scan)
    public = root / "public"
    fulls = []  # (wall without search, its CPU, the result), one per full build
    for attempt in range(REPEAT):
        if attempt:
            set_aside(public)  # each full build starts from nothing
        settle()
        SEARCH["all"] = 0.0
        if profile and not attempt:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            wall, result = timed(lambda p=profiler: p.runcall(write_site, config, parsed))
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        else:
            wall, result = timed(lambda: write_site(config, parsed))
        # Without Pagefind's indexing, timed apart below.
        fulls.append((wall - result.search_seconds, CPU["last"] - SEARCH["all"], result))
        if between is not None:
            between()
    full_alone, full_cpu_alone, result = min(fulls, key=lambda run: run[0])
    full_median = statistics.median(run[0] for run in fulls)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    files = len(result.written) + result.unchanged
    rebuild, again = timed(lambda: write_site(config, parsed))
    rebuild_cpu = CPU["last"]
    assert again.written == (), again.written[:5]
    publishes = []  # one new day each time: new_day, then the days after it
    for day in [new_day, *more_days]:
        (folder / f"{day.date}.txt").write_text(format_digest(day), "utf-8")
        parsed = scan()
        SEARCH["all"] = 0.0
        wall, one = timed(lambda d=day, p=parsed: write_site(config, p, date=d.date))
        publishes.append((wall - one.search_seconds, CPU["last"] - SEARCH["all"], wall, one))
    publish_alone, publish_cpu, _, one = min(publishes, key=lambda run: run[0])
    publish_median = statistics.median(run[0] for run in publishes)
    search_full = result.search_seconds
    figures: dict[str, float] = {
        "parse": parse,
        "full": full_alone,
        "full_search": search_full,
        "rebuild": rebuild - again.search_seconds,
        "publish": publish_alone,
        "publish_search": one.search_seconds,
        "publish_cpu": publish_cpu,
    }
    print(
        f"newsletter ({', '.join(editions)}; {files} files, {peak:.0f} MiB peak RSS, "
        f"Pagefind {peak_children:.0f} MiB; best of {REPEAT} full builds and publishes)"
    )
    line(f"parse {len(digests)} digests", parse)
    line(
        "full build (without search)",
        full_alone,
        f"{len(result.written)} files written; median {full_median:.2f} s",
        full_cpu_alone,
    )
    line("  search index (Pagefind, whole)", search_full)
    line("rebuild, nothing changed", figures["rebuild"], "search skipped", rebuild_cpu)
    line(
        "publish one new day (without search)",
        publish_alone,
        f"{len(one.written)} written, {one.unchanged} unchanged; median {publish_median:.2f} s",
        publish_cpu,
    )
    line("  search index (Pagefind, whole again)", figures["publish_search"])
    return figures


# --- Hugo ------------------------------------------------------------------------------

HUGO_CONFIG = """baseURL = "https://example.org/papers/"
title = "ML Papers"
languageCode = "ko"
disableKinds = ["sitemap", "robotsTXT"]
[pagination]
  pagerSize = 30
paginate = 30
[taxonomies]
  tag = "tags"
[outputs]
  home = ["HTML", "RSS"]
  section = ["HTML", "RSS"]
  taxonomy = ["HTML", "RSS"]
  term = ["HTML", "RSS"]
"""
HUGO_BASE = """<!DOCTYPE html><html lang="ko"><head><meta charset="utf-8"><title>{{ .Title }}</title>
{{ range .AlternativeOutputFormats }}<link rel="{{ .Rel }}" type="{{ .MediaType.Type }}" href="{{ .Permalink }}">{{ end }}
</head><body><main>{{ block "main" . }}{{ end }}</main></body></html>
"""
HUGO_SINGLE = """{{ define "main" }}<h1>{{ .Title }}</h1>{{ .Content }}
<ul>{{ range .Params.tags }}<li><a href="{{ "tags/" | relURL }}{{ . | urlize }}/">#{{ . }}</a></li>{{ end }}</ul>{{ end }}
"""
HUGO_LIST = """{{ define "main" }}<h1>{{ .Title }}</h1>
<ol>{{ range .Paginator.Pages }}<li><a href="{{ .RelPermalink }}">{{ .Title }}</a> {{ .Summary }}</li>{{ end }}</ol>
{{ with .Paginator.Prev }}<a href="{{ .URL }}">newer</a>{{ end }} {{ with .Paginator.Next }}<a href="{{ .URL }}">older</a>{{ end }}{{ end }}
"""


def markdown(digest: Digest) -> str:
    parts = []
    for entry in digest.entries:
        parts.append(
            f"## {entry.title}\n\n*{', '.join(entry.authors)}*\n\n{entry.abstract}\n\n"
            f"> {entry.comment_ko}\n\n{' '.join('#' + t for t in entry.tags)}\n"
        )
    return "\n".join(parts)


def hugo_page(digest: Digest) -> str:
    tags = ", ".join(f'"{t}"' for t in digest.tags)
    return f'---\ntitle: "{digest.date}"\ndate: {digest.date}\ntags: [{tags}]\n---\n\n{markdown(digest)}'


class Hugo:
    """The same digests as a Hugo site (Debian `hugo`): content pages, tags as
    a taxonomy, RSS on, 30 per page. `full` builds it from nothing (no public/
    or resources/) once; bench_ours calls it after each of its full builds, so
    that the two alternate and meet the same machine (a shared disk's speed
    swings within minutes)."""

    def __init__(self, root: Path, digests: list[Digest]) -> None:
        self.hugo = shutil.which("hugo")
        self.fulls: list[tuple[float, float]] = []  # (wall, CPU) of each full build
        if self.hugo is None:
            return
        site = self.site = root / "hugo"
        (site / "content" / "posts").mkdir(parents=True)
        (site / "layouts" / "_default").mkdir(parents=True)
        (site / "hugo.toml").write_text(HUGO_CONFIG, "utf-8")
        (site / "layouts" / "_default" / "baseof.html").write_text(HUGO_BASE, "utf-8")
        (site / "layouts" / "_default" / "single.html").write_text(HUGO_SINGLE, "utf-8")
        (site / "layouts" / "_default" / "list.html").write_text(HUGO_LIST, "utf-8")
        for digest in digests:
            (site / "content" / "posts" / f"{digest.date}.md").write_text(
                hugo_page(digest), "utf-8"
            )
        self.command = [
            self.hugo,
            "--quiet",
            "--source",
            str(site),
            "--destination",
            str(site / "public"),
        ]

    def run(self) -> None:
        subprocess.run(self.command, check=True, capture_output=True)

    def full(self) -> None:
        if self.hugo is None:
            return
        for folder in ("public", "resources"):
            set_aside(self.site / folder)
        settle()
        wall, _ = timed(self.run)
        self.fulls.append((wall, CPU["last"]))


def bench_hugo(hugo: Hugo, new_day: Digest) -> dict[str, float | None]:
    """Hugo's figures: its full builds (Hugo.full, run between ours), then a
    rebuild and builds with one more page."""
    if hugo.hugo is None:
        print("Hugo: skipped (apt-get install hugo)")
        return {"full": None, "rebuild": None, "publish": None}
    site = hugo.site

    def best(runs: int) -> tuple[float, float, float]:
        """(best wall, its CPU, median wall) of `runs` builds."""
        times = []
        for _ in range(runs):
            wall, _ = timed(hugo.run)
            times.append((wall, CPU["last"]))
        wall, cpu = min(times)
        return wall, cpu, statistics.median(t for t, _ in times)

    if not hugo.fulls:
        hugo.full()
    full, full_cpu = min(hugo.fulls)
    full_median = statistics.median(t for t, _ in hugo.fulls)
    rebuild, rebuild_cpu, _ = best(1)
    (site / "content" / "posts" / f"{new_day.date}.md").write_text(hugo_page(new_day), "utf-8")
    publish, publish_cpu, publish_median = best(REPEAT)
    files = sum(1 for path in (site / "public").rglob("*") if path.is_file())
    print(
        f"Hugo ({subprocess.run([hugo.hugo, 'version'], capture_output=True, text=True).stdout.split()[1]}; {files} files)"
    )
    line(
        "full build",
        full,
        f"best of {len(hugo.fulls)}, each right after one of ours; median {full_median:.2f} s",
        full_cpu,
    )
    line("rebuild, nothing changed", rebuild, "", rebuild_cpu)
    line(
        "build with one more page",
        publish,
        f"best of {REPEAT}; median {publish_median:.2f} s",
        publish_cpu,
    )
    return {"full": full, "rebuild": rebuild, "publish": publish}


# --- Pelican ----------------------------------------------------------------------------

PELICAN_CONFIG = """SITENAME = "ML Papers"
SITEURL = "https://example.org/papers"
PATH = "content"
TIMEZONE = "Asia/Seoul"
DEFAULT_LANG = "ko"
DEFAULT_PAGINATION = 30
FEED_ALL_ATOM = "feeds/all.atom.xml"
TAG_FEED_ATOM = "feeds/{slug}.atom.xml"
CATEGORY_FEED_ATOM = None
AUTHOR_FEED_ATOM = None
AUTHOR_FEED_RSS = None
RELATIVE_URLS = False
PAGINATION_PATTERNS = (  # the default's tag/NAME2.html clashes with a tag NAME2
    (1, "{url}", "{save_as}"),
    (2, "{base_name}/page/{number}/", "{base_name}/page/{number}/index.html"),
)
SLUGIFY_USE_UNICODE = True  # Hangul tags keep their names (else they clash as "")
"""


def pelican_venv() -> Path | None:
    """A throw-away venv with Pelican and Markdown (created once under bench/out/)."""
    venv = OUT / "pelican-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True
            )
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "pelican[markdown]>=4.9,<5"],
                check=True,
                capture_output=True,
                timeout=600,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"Pelican: cannot install ({exc})")
            shutil.rmtree(venv, ignore_errors=True)
            return None
    return venv


def pelican_article(digest: Digest) -> str:
    return (
        f"Title: {digest.date}\nDate: {digest.date} 00:00\nTags: {', '.join(digest.tags)}\n"
        f"Category: papers\n\n{markdown(digest)}"
    )


def bench_pelican(root: Path, digests: list[Digest], new_day: Digest) -> dict[str, float | None]:
    venv = pelican_venv()
    if venv is None:
        print("Pelican: skipped")
        return {"full": None, "rebuild": None, "publish": None}
    site = root / "pelican"
    (site / "content").mkdir(parents=True)
    (site / "pelicanconf.py").write_text(PELICAN_CONFIG, "utf-8")
    for digest in digests:
        (site / "content" / f"{digest.date}.md").write_text(pelican_article(digest), "utf-8")
    command = [
        str(venv / "bin" / "pelican"),
        "content",
        "-o",
        "output",
        "-s",
        "pelicanconf.py",
        "-q",
    ]

    def run() -> None:
        done = subprocess.run(command, capture_output=True, text=True, cwd=site)
        if done.returncode:
            raise RuntimeError(f"pelican failed: {done.stdout[-1500:]} {done.stderr[-1500:]}")

    full, _ = timed(run)
    full_cpu = CPU["last"]
    rebuild, _ = timed(run)
    rebuild_cpu = CPU["last"]
    (site / "content" / f"{new_day.date}.md").write_text(pelican_article(new_day), "utf-8")
    publish, _ = timed(run)
    publish_cpu = CPU["last"]
    files = sum(1 for path in (site / "output").rglob("*") if path.is_file())
    print(f"Pelican ({files} files)")
    line("full build", full, "", full_cpu)
    line("rebuild, nothing changed", rebuild, "", rebuild_cpu)
    line("build with one more article", publish, "", publish_cpu)
    return {"full": full, "rebuild": rebuild, "publish": publish}


# --- main -------------------------------------------------------------------------------


def ratio(peer: float | None, ours: float) -> str:
    return "-" if peer is None else f"{peer / ours:6.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("counts", nargs="*", type=int, default=[1000])
    parser.add_argument("--editions", default="ko", help="comma-separated (default: ko)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-peers", action="store_true", help="time only newsletter")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="full builds (ours and Hugo's, each from nothing) and one-day publishes "
        "(successive days) to time; the best counts, the median is shown (default 3)",
    )
    args = parser.parse_args()
    global REPEAT
    REPEAT = max(1, args.repeat)
    for count in args.counts:
        print(f"=== {count} digests")
        digests, new_days = make_digests(count, REPEAT)
        new_day = new_days[0]
        with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
            root = Path(tmp)
            hugo = None if args.no_peers else Hugo(root, digests)
            ours = bench_ours(
                root,
                digests,
                new_day,
                new_days[1:],
                args.editions.split(","),
                args.profile,
                between=None if hugo is None else hugo.full,
            )
            peers = {}
            if hugo is not None:
                peers["Hugo"] = bench_hugo(hugo, new_day)
                peers["Pelican"] = bench_pelican(root, digests, new_day)
        print(f"ratios at {count} (peer time / our time; above 1: we are faster)")
        for name, figures in peers.items():
            print(
                f"  {name:<8} full {ratio(figures['full'], ours['full'])}"
                f"   rebuild {ratio(figures['rebuild'], ours['rebuild'])}"
                f"   one more day {ratio(figures['publish'], ours['publish'])}"
            )


if __name__ == "__main__":
    main()

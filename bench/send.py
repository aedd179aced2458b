"""Benchmark: `newsletter publish` to N subscribers through SMTP, against Postfix's ceiling.

    python bench/send.py [--subscribers N] [--connections C] [--skip-ceiling] [--7bit]
                         [--bounce-address bounces@example.org] [--topics]
                         [--tls-subscribers N] [--skip-postfix]

Needs Postfix's test tools (`smtp-sink`, `smtp-source` in /usr/sbin), run as root:

    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y postfix

What it does, all on localhost:

1. starts `smtp-sink -u nobody 127.0.0.1:PORT 1000` (accepts and discards mail;
   it advertises 8BITMIME, so the 8bit form goes; `--7bit` starts it with -8,
   without 8BITMIME, and the quoted-printable/base64 form goes);
2. creates N subscribers (default 100,000; editions ko/en/both in turn) in a
   fresh SQLite state folder with `Subscribers.add_many` (the bulk path);
   with `--topics`, half of them choose 1-4 topics drawn from a Zipf-like
   distribution (weight 1/rank) over 30 tags (`TAGS`, the example digests'
   and others), the rest every paper; it prints how many distinct topic sets
   that makes, and the run prints how many distinct emails it rendered;
3. writes a config: transport smtp, security none, `connections` C (default 2),
   no rate limit, the example digest of 2025-04-04;
4. runs the REAL `python -m newsletter publish --date 2025-04-04 --force` as a
   subprocess: wall time from start to exit, its summary line, its peak RSS
   (the largest process, from wait4) and the peak PSS of its whole process
   tree (sampled from /proc every 20 ms), then checks the ledger: N sent;
5. the ceiling: `smtp-source -d -s C -m N -l SIZE` into the same smtp-sink,
   SIZE being the real size of one of our messages;
6. plain SMTP against STARTTLS, in the same run: the same publish (default
   5,000 subscribers, `--tls-subscribers`) into an aiosmtpd sink in its own
   process (bench/smtp_sink.py), once with `security: none` and once with
   `security: starttls` and a throw-away certificate (trustme; the client
   trusts it through SSL_CERT_FILE); prints both rates and STARTTLS/plain;
7. the start-up time of `newsletter --help` (hyperfine if installed, else the
   best of 10 runs).

Absolute figures on a shared 2-core machine are noisy: compare the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIGESTS = ROOT / "examples" / "digests"
DATE = "2025-04-04"
SECRET = "bench-secret-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tool(name: str) -> str:
    path = shutil.which(name) or f"/usr/sbin/{name}"
    if not Path(path).exists():
        sys.exit(
            f"{name} not found: install Postfix (as root): "
            "DEBIAN_FRONTEND=noninteractive apt-get install -y postfix"
        )
    return path


@contextlib.contextmanager
def smtp_sink(port: int, eightbitmime: bool = True):
    flags = [] if eightbitmime else ["-8"]  # -8: do not announce 8BITMIME
    args = [tool("smtp-sink"), *flags, "-u", "nobody", f"127.0.0.1:{port}", "1000"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 5
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(
                f"smtp-sink did not start: {process.stderr.read().decode() if process.stderr else ''}"
            )
        time.sleep(0.02)
    try:
        yield
    finally:
        process.terminate()
        process.wait()


@contextlib.contextmanager
def aiosmtpd_sink(port: int, tls: tuple[Path, Path] | None = None):
    """bench/smtp_sink.py in its own process: plain, or STARTTLS with (cert, key)."""
    args = [sys.executable, str(Path(__file__).with_name("smtp_sink.py")), str(port)]
    if tls:
        args += ["--tls", str(tls[0]), str(tls[1])]
    process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if process.stdout is None or process.stdout.readline().strip() != "ready":
            sys.exit(f"the aiosmtpd sink did not start ({process.wait()})")
        yield
    finally:
        process.terminate()
        process.wait()


def certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1: (CA pem, cert pem, key pem)."""
    try:
        import trustme
    except ImportError:
        sys.exit("trustme is missing: pip install -e '.[test]'")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    paths = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(paths[0]))
    cert.cert_chain_pems[0].write_to_path(str(paths[1]))
    cert.private_key_pem.write_to_path(str(paths[2]))
    return paths


def write_config(
    folder: Path,
    port: int,
    connections: int,
    bounce_address: str | None = None,
    security: str = "none",
) -> Path:
    path = folder / "config.yaml"
    path.write_text(
        "site:\n  base_url: https://papers.example.org/\n  timezone: Asia/Seoul\n"
        f"paths:\n  digests: {DIGESTS}\n  public: public\n  state: state\n  outbox: outbox\n"
        "email:\n  transport: smtp\n  from: ML Papers <papers@example.org>\n"
        + (f"  bounce_address: {bounce_address}\n" if bounce_address else "")
        + "  smtp:\n    host: 127.0.0.1\n"
        f"    port: {port}\n    security: {security}\n    connections: {connections}\n"
        "    rate_limit: 0\n    timeout: 30\n",
        encoding="utf-8",
    )
    return path


# 30 tags by popularity (rank 1 first): the example digests' tags among others.
TAGS = [
    "llm",
    "reasoning",
    "rl",
    "agent",
    "efficiency",
    "multimodal",
    "moe",
    "alignment",
    "vision",
    "code",
    "inference-time-scaling",
    "long-context",
    "pretraining",
    "math",
    "reward-model",
    "diffusion",
    "benchmark",
    "retrieval",
    "safety",
    "transformer",
    "scaling-law",
    "corpus",
    "robotics",
    "speech",
    "image-generation",
    "quantization",
    "distillation",
    "tokenizer",
    "korean",
    "evaluation",
]


def topic_sets(count: int, seed: int = 20) -> list[tuple[str, ...]]:
    """A topic set per subscriber: half every paper (()), half 1-4 tags drawn by
    a Zipf-like law (weight 1/rank) without replacement. Deterministic."""
    import random

    rng = random.Random(seed)
    weights = [1 / rank for rank in range(1, len(TAGS) + 1)]
    out: list[tuple[str, ...]] = []
    for _ in range(count):
        if rng.random() < 0.5:
            out.append(())
            continue
        size = rng.choices((1, 2, 3, 4), weights=(4, 3, 2, 1))[0]
        chosen: set[str] = set()
        while len(chosen) < size:
            chosen.add(rng.choices(TAGS, weights=weights)[0])
        out.append(tuple(sorted(chosen)))
    return out


def create_subscribers(config_path: Path, count: int, topics: bool) -> tuple[float, int]:
    """(seconds, distinct topic sets) for `count` new subscribers."""
    from newsletter.config import load_config
    from newsletter.model import Edition
    from newsletter.store import Store
    from newsletter.store.subscribers import Preferences

    editions = list(Edition)
    sets = topic_sets(count) if topics else [()] * count
    started = time.monotonic()
    with Store.open(load_config(str(config_path))) as store:
        rows = (
            (f"reader{i}@example.org", editions[i % 3], f"Reader {i}", Preferences(topics=sets[i]))
            for i in range(count)
        )
        store.subscribers.add_many(rows)
    return time.monotonic() - started, len(set(sets))


def message_size(config_path: Path, eightbit: bool) -> int:
    """The mean encoded size of one personalised message over the three editions,
    in the wire form the sink takes."""
    import datetime as dt

    from newsletter.config import load_config
    from newsletter.digest import read_digest
    from newsletter.mail import build_edition_email
    from newsletter.model import Edition
    from newsletter.tokens import UNSUBSCRIBE, sign_token

    config = load_config(str(config_path))
    digest = read_digest(DIGESTS / f"{DATE}.txt").digest
    now = dt.datetime(2025, 4, 4, 7, tzinfo=config.site.tz)
    address = "reader12345@example.org"
    token = sign_token(SECRET.encode(), UNSUBSCRIBE, address)
    sizes = [
        len(
            build_edition_email(config, digest, e, now=now).personalise(
                address, "Reader", token, eightbit=eightbit
            )
        )
        for e in Edition
    ]
    return sum(sizes) // len(sizes)


def tree_pss(root: int) -> int:
    """Proportional set size of `root` and its descendants (Linux /proc).

    PSS, not RSS: the forked workers share most of their pages with their
    parent, and RSS would count those once per process.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
                for line in handle:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def run_publish(
    config_path: Path, env: dict[str, str] | None = None
) -> tuple[float, str, int, int]:
    """(seconds, stdout, peak RSS of the largest process, peak PSS of the tree)."""
    env = os.environ | {"NEWSLETTER_SECRET": SECRET, "PYTHONUNBUFFERED": "1"} | (env or {})
    args = [
        sys.executable,
        "-m",
        "newsletter",
        "--config",
        str(config_path),
        "publish",
        "--date",
        DATE,
        "--force",
    ]
    started = time.monotonic()
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak_tree = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_tree
        while not done.wait(0.02):
            peak_tree = max(peak_tree, tree_pss(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    readers = [
        threading.Thread(target=lambda: out_chunks.append(process.stdout.read()), daemon=True),
        threading.Thread(target=lambda: err_chunks.append(process.stderr.read()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    for reader in readers:
        reader.join()
    stdout = b"".join(out_chunks).decode()
    if process.returncode != 0:
        sys.exit(
            f"publish failed ({process.returncode}):\n{stdout}\n{b''.join(err_chunks).decode()}"
        )
    return seconds, stdout, usage.ru_maxrss * 1024, peak_tree


def check_ledger(config_path: Path, count: int) -> dict[str, int]:
    """The ledger must hold exactly `count` sent rows (those whose topics
    picked a paper) and nothing else."""
    import datetime as dt

    from newsletter.config import load_config
    from newsletter.store import Store

    with Store.open(load_config(str(config_path))) as store:
        counts = store.ledger.delivery_counts(dt.date.fromisoformat(DATE))
    if counts != {"sent": count}:
        sys.exit(f"the ledger is not exact: {counts} (expected {{'sent': {count}}})")
    return counts


def expected_recipients(count: int, topics: bool) -> int:
    """How many of the subscribers have a paper of the issue on their topics."""
    from newsletter.digest import read_digest
    from newsletter.letters import Letter

    letter = Letter.daily(read_digest(DIGESTS / f"{DATE}.txt").digest)
    sets = topic_sets(count) if topics else [()] * count
    return sum(letter.for_topics(s) is not None for s in sets)


def ceiling(port: int, connections: int, count: int, size: int) -> float:
    args = [
        tool("smtp-source"),
        "-d",
        "-s",
        str(connections),
        "-m",
        str(count),
        "-l",
        str(size),
        "-f",
        "papers@example.org",
        "-t",
        "reader@example.org",
        f"127.0.0.1:{port}",
    ]
    started = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return count / (time.monotonic() - started)


def tls_comparison(folder: Path, count: int, connections: int) -> None:
    """The same publish into an aiosmtpd sink, plain then STARTTLS; prints both and the ratio."""
    ca, cert, key = certificates(folder)
    rates = {}
    for security in ("none", "starttls"):
        run = folder / f"tls-{security}"
        run.mkdir()
        port = free_port()
        config_path = write_config(run, port, connections, security=security)
        create_subscribers(config_path, count, topics=False)
        with aiosmtpd_sink(port, (cert, key) if security == "starttls" else None):
            seconds, _, _, _ = run_publish(config_path, {"SSL_CERT_FILE": str(ca)})
        check_ledger(config_path, count)
        rates[security] = count / seconds
    print(f"aiosmtpd sink:   {count:,} messages over {connections} connection(s), each run")
    print(f"  plain:         {rates['none']:,.0f} messages/s (security: none)")
    print(f"  STARTTLS:      {rates['starttls']:,.0f} messages/s (security: starttls)")
    print(f"  ratio:         {rates['starttls'] / rates['none']:.2f} (STARTTLS/plain)")


def help_startup() -> str:
    newsletter = Path(sys.executable).parent / "newsletter"
    command = (
        f"{newsletter} --help" if newsletter.exists() else f"{sys.executable} -m newsletter --help"
    )
    if shutil.which("hyperfine"):
        result = subprocess.run(
            [
                "hyperfine",
                "-N",
                "--warmup",
                "3",
                "--runs",
                "20",
                "--export-json",
                "/dev/stdout",
                "--style",
                "none",
                command,
            ],
            capture_output=True,
            text=True,
        )
        match = re.search(r'"mean":\s*([0-9.eE+-]+)', result.stdout)
        if match:
            return f"{float(match.group(1)) * 1000:.0f} ms (hyperfine mean)"
    best = min(_timed(command.split()) for _ in range(10))
    return f"{best * 1000:.0f} ms (best of 10)"


def _timed(args: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def smtp_sink_run(folder: Path, n: int, c: int, args: argparse.Namespace) -> None:
    """Publish to n subscribers into Postfix's smtp-sink; smtp-source -d as the ceiling."""
    port = free_port()
    config_path = write_config(folder, port, c, args.bounce_address)
    setup, sets = create_subscribers(config_path, n, args.topics)
    size = message_size(config_path, not args.sevenbit)
    form = "7-bit (no 8BITMIME)" if args.sevenbit else "8bit (8BITMIME)"
    print(f"setup: {n:,} subscribers in {setup:.1f} s; one message is {size:,} bytes, {form}")
    if args.topics:
        print(f"topics:          {sets:,} distinct topic sets (every paper counts as one)")
    sent = expected_recipients(n, args.topics)
    with smtp_sink(port, not args.sevenbit):
        seconds, stdout, peak_one, peak_tree = run_publish(config_path)
        check_ledger(config_path, sent)
        summary = next((line for line in stdout.splitlines() if line.startswith("email:")), "")
        rate = sent / seconds
        print(f"publish: {summary}")
        print(f"messages:        {sent:,} over {c} connection(s), ledger exact ({sent:,} sent)")
        print(f"seconds:         {seconds:.2f} (start of `newsletter publish` to its exit)")
        print(f"messages/s:      {rate:,.0f}")
        print(
            f"peak memory:     {peak_one / 2**20:.0f} MB RSS of the largest process, "
            f"{peak_tree / 2**20:.0f} MB PSS of the whole process tree"
        )
        if not args.skip_ceiling:
            top = ceiling(port, c, sent, size)
            print(f"ceiling:         {top:,.0f} messages/s (smtp-source -d -s {c} -l {size})")
            print(f"ratio:           {rate / top:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--skip-ceiling", action="store_true")
    parser.add_argument(
        "--tls-subscribers",
        type=int,
        default=5_000,
        help="messages of the plain/STARTTLS comparison (0: skip it)",
    )
    parser.add_argument(
        "--skip-postfix", action="store_true", help="only the plain/STARTTLS comparison"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--bounce-address",
        metavar="ADDRESS",
        help="set email.bounce_address: a signed VERP return path per message",
    )
    parser.add_argument(
        "--7bit", dest="sevenbit", action="store_true", help="a sink without 8BITMIME"
    )
    parser.add_argument(
        "--topics",
        action="store_true",
        help="half the subscribers choose topics (Zipf-like over 30 tags): variants",
    )
    args = parser.parse_args()
    n, c = args.subscribers, args.connections

    folder = Path(tempfile.mkdtemp(prefix="nl-bench-"))
    try:
        if not args.skip_postfix:
            smtp_sink_run(folder, n, c, args)
        if args.tls_subscribers:
            tls_comparison(folder, args.tls_subscribers, c)
        print(f"--help startup:  {help_startup()}")
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

"""A local HTTP server that answers like the arXiv API, for the link tests.

It searches the hand-written entries of tests/data/arxiv by `search_query`
as the API's title search does: `ti:"words"` phrases joined by AND, a phrase
matching consecutive words of a title. Like arXiv's search, punctuation in a
phrase (a hyphen reads as NOT, a colon as a field) finds nothing. It answers
Atom feeds as https://info.arxiv.org/help/api/user-manual.html describes,
over HTTP/1.1 keep-alive, and misbehaves on cue: an HTTP status, or a hang
or released. It records every request (time by the test's clock, client
address and port, query, User-Agent).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

ARXIV_DATA = Path(__file__).parent / "data" / "arxiv"
PAPERS = sorted(ARXIV_DATA.glob("*.xml"))
DECOYS = {path.stem: path for path in (ARXIV_DATA / "decoys").glob("*.xml")}
_ATOM = "{http://www.w3.org/2005/Atom}"
_OPENSEARCH = 'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/"'


class FakeTime:
    """Monotonic clock, sleep and UTC wall time for the code under test.

    sleep() moves the clock forward instead of waiting, so a 3 s rate limit
    costs no real time; real time still passes underneath (timeouts are real).
    now() moves only with sleep() and advance(), so retry times are exact.
    """

    START = dt.datetime(2025, 5, 19, 0, 0, tzinfo=dt.UTC)

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return time.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.offset += seconds

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def now(self) -> dt.datetime:
        return self.START + dt.timedelta(seconds=self.offset)


@dataclass(frozen=True)
class Entry:
    arxiv_id: str
    title_words: tuple[str, ...]
    xml: str


def _load(path: Path) -> Entry:
    text = path.read_text(encoding="utf-8")
    root = ET.fromstring(text)
    title = root.findtext(f"{_ATOM}title") or ""
    words = tuple(re.findall(r"[\w'’]+", title.lower()))
    return Entry(path.stem, words, re.sub(r"^<\?xml[^>]*\?>\s*", "", text))


@dataclass(frozen=True)
class Seen:
    at: float
    client: tuple[str, int]
    query: dict[str, str]
    user_agent: str


@dataclass
class Behaviour:
    """What the server does: the catalog, and misbehaviours for the next requests."""

    entries: dict[str, Entry] = field(default_factory=dict)
    # One per coming request, then normal answers: ("status", code, headers), or
    # ("hang", seconds): answer normally after that long, or when released.
    script: list[tuple] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _phrases(query: str) -> list[tuple[str, ...]] | None:
    """The ti:"..." phrases of `query`; None where arXiv would find nothing."""
    clauses = re.split(r"\s+AND\s+", query.strip())
    phrases = []
    for clause in clauses:
        match = re.fullmatch(r'ti:"([^"]*)"', clause)
        if match is None:
            raise ValueError(f"unsupported query clause {clause!r}")
        if re.search(r"[^\w\s]", match[1]):
            return None
        phrases.append(tuple(match[1].lower().split()))
    return phrases


def _contains(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return n > 0 and any(words[i : i + n] == phrase for i in range(len(words) - n + 1))


def feed(query: str, entries: list[Entry], start: int, max_results: int) -> bytes:
    page = entries[start : start + max_results]
    body = "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<feed xmlns="http://www.w3.org/2005/Atom">',
            '  <link href="http://arxiv.org/api/query" rel="self" type="application/atom+xml"/>',
            f'  <title type="html">ArXiv Query: search_query={escape(query)}&amp;id_list=&amp;'
            f"start={start}&amp;max_results={max_results}</title>",
            "  <id>http://arxiv.org/api/test</id>",
            "  <updated>2025-05-19T00:00:00-04:00</updated>",
            f"  <opensearch:totalResults {_OPENSEARCH}>{len(entries)}</opensearch:totalResults>",
            f"  <opensearch:startIndex {_OPENSEARCH}>{start}</opensearch:startIndex>",
            f"  <opensearch:itemsPerPage {_OPENSEARCH}>{len(page)}</opensearch:itemsPerPage>",
            *(e.xml for e in page),
            "</feed>",
            "",
        ]
    )
    return body.encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client may use one connection

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/atom+xml; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        server: ArxivServer = self.server.owner  # type: ignore[attr-defined]
        behaviour = server.behaviour
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        with behaviour.lock:
            behaviour.seen.append(
                Seen(server.time.clock(), self.client_address, query, self.headers["User-Agent"])
            )
            action = behaviour.script.pop(0) if behaviour.script else None
        if url.path != "/api/query":
            self._send(404, b"not found")
            return
        if action and action[0] == "hang":
            behaviour.release.wait(action[1])
        elif action and action[0] == "status":
            self._send(action[1], b"<html>Service Unavailable</html>", action[2])
            return
        search = query.get("search_query", "")
        try:
            phrases = _phrases(search)
        except ValueError as exc:
            self._send(400, str(exc).encode())
            return
        with behaviour.lock:
            catalog = list(behaviour.entries.values())
        hits = [e for e in catalog if phrases and all(_contains(e.title_words, p) for p in phrases)]
        start, size = int(query.get("start", 0)), int(query.get("max_results", 10))
        with contextlib.suppress(OSError):  # the client gave up waiting (a hang)
            self._send(200, feed(search, hits, start, size))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and left is expected here


class ArxivServer:
    """The fake API on 127.0.0.1, port 0; `url` is its query endpoint."""

    def __init__(self, time: FakeTime, papers: Iterable[Path] = PAPERS) -> None:
        self.time = time
        self.behaviour = Behaviour()
        for path in papers:
            self.add(path)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/query"

    @property
    def seen(self) -> list[Seen]:
        with self.behaviour.lock:
            return list(self.behaviour.seen)

    def add(self, path: Path) -> None:
        entry = _load(path)
        with self.behaviour.lock:
            self.behaviour.entries[entry.arxiv_id] = entry

    def remove(self, arxiv_id: str) -> None:
        with self.behaviour.lock:
            del self.behaviour.entries[arxiv_id]

    def then(self, *actions: tuple) -> None:
        """Misbehave on the next requests, one action each."""
        with self.behaviour.lock:
            self.behaviour.script.extend(actions)

    def close(self) -> None:
        self.behaviour.release.set()
        self._server.shutdown()
        self._server.server_close()

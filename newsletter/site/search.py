"""Full-text search: a Pagefind index per edition, searched in the reader's browser.

Pagefind (https://pagefind.app) comes from PyPI with its binary (`pagefind[bin]`).
Each paper of each issue is one record, fed to Pagefind's indexing service
as a small HTML document with the URL of the paper's anchor on its issue
page: its title (weighted as a heading), authors, tags, the edition's
comments, the abstract (half weight), and the stems described below. Each
edition's bundle is written to `pagefind/E/` and searched from `E/search/`.

Korean. Words are written with their particles attached (`모델을`, `모델이`).
Pagefind splits on whitespace and has no Korean stemmer; its standard and
extended binaries index Hangul identically (the extended one segments only
Chinese, Japanese and Thai), so the standard one (10 MB, not 57 MB) is used.
Pagefind matches a query word as a prefix, so `모델` already finds `모델을`
and `모델이`, but ranks them below a bare `모델`, and `모델을` finds neither
`모델이` nor `모델`. So each record also holds the stems of its Hangul words
(the word without a trailing particle or ending, PARTICLES), at a low weight,
and the search page strips the same endings from each query word
(PARTICLE_PATTERN, shared with the page's script). A stem is kept only when
at least two syllables, or a Latin word (`LLM을` -> `llm`), remain.

The index is rebuilt whole each time it runs (Pagefind cannot add to an
index); the build skips running it when no record changed.
"""

from __future__ import annotations

import functools
import logging
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from markupsafe import escape

from newsletter import render
from newsletter.model import Digest, Edition

if TYPE_CHECKING:
    from newsletter.config import Config

log = logging.getLogger("newsletter")

# Particles (조사), the copula and common verb endings after a noun, longest
# first where one ends another.
PARTICLES = (
    *("에서부터", "으로부터", "이라는", "에게서", "한테서", "으로써", "으로서", "이라고"),
    *("에서는", "에서도", "에서의", "으로는", "으로도", "으로의", "로부터", "이라면", "이지만"),
    *("까지", "부터", "보다", "처럼", "만큼", "마다", "조차", "에서", "에게", "한테", "께서"),
    *("으로", "로써", "로서", "에는", "에도", "에의", "와의", "과의", "이나", "이랑", "이며"),
    *("이고", "이다", "이란", "라는", "라고", "하는", "하고", "하여", "해서", "했다", "한다"),
    *("하며", "되는", "되어", "된다", "적인", "적으로", "들이", "들을", "들의", "들은", "들도"),
    *("의", "은", "는", "이", "가", "을", "를", "에", "로", "와", "과", "도", "만", "들"),
    *("한", "된", "적", "나", "랑"),
)
# A word's stem and ending: at least two characters, or one that is not a
# Hangul syllable, before an ending. Python re and JavaScript RegExp read it alike.
PARTICLE_PATTERN = (
    "^(.{2,}?|[^\\uAC00-\\uD7A3])(?:" + "|".join(sorted(PARTICLES, key=len, reverse=True)) + ")$"
)
_ENDING = re.compile(PARTICLE_PATTERN)
_SYLLABLE = re.compile("[\uac00-\ud7a3]")
_EDGE_PUNCTUATION = "\"'()[]{}<>.,;:!?«»“”‘’·…"

# How long the service may take to exit once its input ends.
SERVICE_EXIT_SECONDS = 300
# Results show the date under this name.
DATE_LABEL = {"ko": "날짜", "en": "Date"}
STEM_WEIGHT = 0.3
ABSTRACT_WEIGHT = 0.5


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """`word` without a trailing Korean particle or ending (see PARTICLES)."""
    match = _ENDING.match(word)
    return match.group(1) if match else word


def stems(text: str) -> list[str]:
    """The stems of text's Hangul words that had an ending, lower case, in
    first-seen order, without repeats."""
    found: dict[str, None] = {}
    if not _SYLLABLE.search(text):
        return []
    for word in text.split():
        if not _SYLLABLE.search(word):
            continue
        word = word.strip(_EDGE_PUNCTUATION).lower()
        short = stem(word)
        if short != word:
            found.setdefault(short.strip(_EDGE_PUNCTUATION), None)
    return [word for word in found if word]


def bundle_folder(edition: str) -> str:
    """Where an edition's Pagefind bundle lives, relative to the site root."""
    return f"pagefind/{edition}/"


# --- records -------------------------------------------------------------------------


def records(config: Config, digests: Iterable[Digest], edition: str) -> list[tuple[str, str]]:
    """(url, html) of every paper of the digests in one edition; urls relative to
    the site root (`ko/2025-04-04/#anchor`), html a document Pagefind indexes."""
    language = Edition(edition).language
    index_file = "index.html" if config.site.relative_urls else ""
    out = []
    for digest in digests:
        date_text = render.format_date(digest.date, language)
        for paper in render.paper_views(digest, edition):
            url = f"{edition}/{digest.date.isoformat()}/{index_file}#{paper.anchor}"
            out.append((url, record_html(paper, language, date_text)))
    return out


def record_html(paper: render.PaperView, language: str, date_text: str) -> str:
    """One paper as Pagefind reads it (never shown: results show its title,
    the date and an excerpt)."""
    comments = " ".join(comment.text for comment in paper.comments)
    tags = " ".join(f"#{tag.name}" for tag in paper.tags)
    words = list(
        dict.fromkeys(
            w for text in (paper.title, comments, paper.abstract, tags) for w in stems(text)
        )
    )
    parts = [
        f'<html lang="{language}"><body>',
        f'<span data-pagefind-meta="{DATE_LABEL[language]}:{escape(date_text)}"></span>',
        f"<h1>{escape(paper.title)}</h1>",
        f"<p>{escape(paper.authors)}</p>" if paper.authors else "",
        f"<p>{escape(tags)}</p>" if tags else "",
        f"<p>{escape(comments)}</p>" if comments else "",
        f'<p data-pagefind-weight="{ABSTRACT_WEIGHT}">{escape(paper.abstract)}</p>'
        if paper.abstract
        else "",
        f'<p data-pagefind-weight="{STEM_WEIGHT}">{escape(" ".join(words))}</p>' if words else "",
        "</body></html>",
    ]
    return "".join(parts)


# --- running Pagefind --------------------------------------------------------------


class SearchUnavailable(Exception):
    """Pagefind is not installed, or its binary cannot run on this platform."""


def pagefind_binary() -> Path:
    """The Pagefind binary (PAGEFIND_BINARY_PATH, pagefind-bin from PyPI, or PATH)
    after checking that it runs; SearchUnavailable with the reason otherwise."""
    try:
        from pagefind.service import get_executable
    except ImportError as exc:
        raise SearchUnavailable(f"the pagefind package is not installed ({exc})") from None
    binary = get_executable()
    if binary is None:
        raise SearchUnavailable(
            "no Pagefind binary for this platform (pip install 'pagefind[bin]')"
        )
    try:
        subprocess.run([str(binary), "--version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SearchUnavailable(f"the Pagefind binary {binary} cannot run: {exc}") from None
    return binary


def pagefind_version() -> str:
    """The Pagefind package version (part of the search index's key)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pagefind")
    except PackageNotFoundError:
        return "unknown"


def build_bundles(config: Config, digests: list[Digest]) -> dict[str, bytes]:
    """Every edition's Pagefind bundle: {path under public/: bytes}.

    Raises SearchUnavailable when Pagefind cannot run or fails.
    """
    binary = pagefind_binary()
    files: dict[str, bytes] = {}
    for edition in config.editions:
        adds = [
            {"type": "AddFile", "url": url, "file_contents": html, "file_path": None}
            for url, html in records(config, digests, edition)
        ]
        options = {"force_language": Edition(edition).language}
        for path, data in _run_service(binary, options, adds).items():
            files[bundle_folder(edition) + path] = data
    return dict(sorted(files.items()))


def _run_service(
    binary: Path, options: dict[str, object], adds: list[dict[str, object]]
) -> dict[str, bytes]:
    """Index `adds` in one `pagefind --service` process; its bundle's files.

    The service reads base64-encoded JSON requests, each ended by a comma, and
    answers each the same way with its message_id: the protocol that
    Pagefind's own Python and Node.js wrappers speak. We speak it directly
    because the Python wrapper (pagefind 1.5) waits 0.1 s before reading each
    answer: 27 minutes for 16,000 papers instead of seconds. The bundle comes
    back in the answer to GetFiles: WriteFiles answers, and the service can
    exit, before its files are all written (we saw empty ones).
    """
    import base64
    import json
    import threading

    process = subprocess.Popen(
        [str(binary), "--service"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout

    def send(message_id: int, payload: dict[str, object]) -> None:
        body = json.dumps({"message_id": message_id, "payload": payload}).encode("utf-8")
        stdin.write(base64.b64encode(body) + b",")

    buffer = bytearray()

    def receive() -> dict[str, object]:
        # Answers end with a comma, which base64 never holds.
        while (end := buffer.find(b",")) < 0:
            data = stdout.read1(1 << 16)
            if not data:
                raise SearchUnavailable("the Pagefind service stopped unexpectedly")
            buffer.extend(data)
        answer = json.loads(base64.b64decode(bytes(buffer[:end])))
        del buffer[: end + 1]
        payload = answer.get("payload", {})
        if payload.get("type") == "Error":
            raise SearchUnavailable(f"Pagefind: {payload.get('message')}")
        return payload

    try:
        send(1, {"type": "NewIndex", "config": options})
        stdin.flush()
        index_id = receive()["index_id"]
        failure: list[BaseException] = []

        def write_all() -> None:
            try:
                for number, add in enumerate(adds, 2):
                    send(number, {**add, "index_id": index_id})
                stdin.flush()
            except BaseException as exc:  # reported by the reader's side
                failure.append(exc)

        writer = threading.Thread(target=write_all, daemon=True)
        writer.start()
        for _ in adds:
            receive()
        writer.join()
        if failure:
            raise SearchUnavailable(f"cannot feed the Pagefind service: {failure[0]}")
        send(len(adds) + 2, {"type": "GetFiles", "index_id": index_id})
        stdin.flush()
        bundle = {
            str(item["path"]): base64.b64decode(str(item["content"]))
            for item in receive()["files"]  # type: ignore[union-attr]
        }
        stdin.close()
        if process.wait(timeout=SERVICE_EXIT_SECONDS) != 0:
            raise SearchUnavailable(f"the Pagefind service exited with {process.returncode}")
        return bundle
    except subprocess.TimeoutExpired:
        raise SearchUnavailable("the Pagefind service did not stop") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

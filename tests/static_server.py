"""A static file server for a built site, under a URL prefix (like a site whose
site.base_url has a path: https://example.org/papers/ is served at /papers/)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class _Handler(http.server.SimpleHTTPRequestHandler):
    prefix = "/"

    def send_head(self):  # type: ignore[no-untyped-def]
        if not self.path.startswith(self.prefix):
            self.send_error(404, "outside the site's prefix")
            return None
        return super().send_head()

    def translate_path(self, path: str) -> str:
        return super().translate_path("/" + path[len(self.prefix) :])

    def log_message(self, format: str, *args: object) -> None:  # quiet tests
        pass


@contextmanager
def serve_static(folder: Path, prefix: str = "/") -> Iterator[str]:
    """Serve `folder` at http://127.0.0.1:PORT{prefix} (an ephemeral port) in a
    thread; yields that URL; stops when the block ends."""
    handler = type("Handler", (_Handler,), {"prefix": prefix})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{prefix}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

"""`newsletter preview`: the site as it would be published, served on localhost.

It is built into a temporary folder with localhost URLs, so an author can look
at a digest before it goes anywhere; paths.public is never touched. The folder
is removed when the preview stops: Ctrl-C (SIGINT) or SIGTERM.
"""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import tempfile
import urllib.parse
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from newsletter.config import Config
from newsletter.errors import NewsletterError
from newsletter.files import is_hidden, served_type
from newsletter.signals import sigterm_is_ctrl_c


def preview_config(config: Config, public: Path, port: int) -> Config:
    """The config with paths.public in `public` and site URLs on 127.0.0.1:port."""
    base_url = f"http://127.0.0.1:{port}/"
    return config.model_copy(
        update={
            "site": config.site.model_copy(update={"base_url": base_url}),
            "paths": config.paths.model_copy(update={"public": public}),
        }
    )


class _Files(http.server.SimpleHTTPRequestHandler):
    """The built site; dotfiles (the build manifest) are 404, feeds get their
    own media types (`files.served_type`) and text says it is UTF-8, as with `serve`."""

    def guess_type(self, path: Any) -> str:
        feed = served_type(str(path).replace("\\", "/"))
        if feed:
            return feed
        guessed = str(super().guess_type(path))
        return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed

    def send_head(self) -> Any:
        if is_hidden(urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)):
            self.send_error(404, "File not found")
            return None
        return super().send_head()


class _Server(http.server.ThreadingHTTPServer):
    """A client that hangs up mid-answer is the client's business, not a traceback.

    A browser or `urllib` that has read the status of a 404 may close before
    the error page is written; the handler thread then meets BrokenPipeError or
    ConnectionResetError. Any other error is still reported. Stopping never
    waits for a client that keeps its connection open (`block_on_close`).
    """

    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def serve_preview(
    config: Config,
    *,
    date: dt.date | None,
    edition: str | None,
    port: int,
    open_browser: bool,
    echo: Callable[[str], None] = print,
) -> None:
    """Build every digest into a temporary folder and serve it until SIGINT/SIGTERM.

    `port` 0 takes a free one (the printed URL says which). NewsletterError if
    there is no valid digest, or the port cannot be used.
    """
    from newsletter.publish import scan, with_known_links
    from newsletter.site import write_site

    with (
        tempfile.TemporaryDirectory(prefix="newsletter-preview-") as folder,
        sigterm_is_ctrl_c(),
    ):
        handler = functools.partial(_Files, directory=folder)
        try:
            server = _Server(("127.0.0.1", port), handler)
        except OSError as exc:
            raise NewsletterError(
                f"cannot listen on 127.0.0.1:{port}: {exc.strerror}",
                hint="choose another port with --port",
            ) from None
        with server:
            local = preview_config(config, Path(folder), server.server_address[1])
            found = scan(local)
            digests = found.digests
            for report in found.bad:
                for problem in report.errors:
                    echo(f"skipped: {problem}")
            if not digests:
                raise NewsletterError(
                    f"no valid digest in {config.paths.digests}", hint="run 'newsletter check'"
                )
            chosen = found.digest_for(date) if date else digests[-1]
            write_site(local, with_known_links(config, digests), date=None)
            page_edition = edition or local.editions[0].value
            url = f"{local.site.base_url}{page_edition}/{chosen.date.isoformat()}/"
            echo(f"previewing {chosen.date.isoformat()} at {url} (Ctrl-C to stop)")
            if open_browser:
                webbrowser.open(url)
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                echo("preview stopped")

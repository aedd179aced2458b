"""`newsletter preview`: the site as it would be published, served on localhost.

It is built into a temporary folder with localhost URLs, so an author can look
at a digest before it goes anywhere; paths.public is never touched.
"""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import tempfile
import webbrowser
from collections.abc import Callable
from pathlib import Path

from newsletter.config import Config
from newsletter.errors import NewsletterError


def preview_config(config: Config, public: Path, port: int) -> Config:
    base_url = f"http://127.0.0.1:{port}/"
    return config.model_copy(
        update={
            "site": config.site.model_copy(update={"base_url": base_url}),
            "paths": config.paths.model_copy(update={"public": public}),
        }
    )


def serve_preview(
    config: Config,
    *,
    date: dt.date | None,
    edition: str | None,
    port: int,
    open_browser: bool,
    echo: Callable[[str], None] = print,
) -> None:
    from newsletter.publish import scan
    from newsletter.site import write_site

    with tempfile.TemporaryDirectory(prefix="newsletter-preview-") as folder:
        local = preview_config(config, Path(folder), port)
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
        write_site(local, digests, date=None)
        page_edition = edition or local.editions[0].value
        url = f"{local.site.base_url}{page_edition}/{chosen.date.isoformat()}/"
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
        try:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as exc:
            raise NewsletterError(
                f"cannot listen on 127.0.0.1:{port}: {exc.strerror}",
                hint="choose another port with --port",
            ) from None
        echo(f"previewing {chosen.date.isoformat()} at {url} (Ctrl-C to stop)")
        if open_browser:
            webbrowser.open(url)
        with server:
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                echo("preview stopped")

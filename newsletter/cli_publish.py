"""`newsletter publish|build|preview|send-test`: the site, the feeds and the email.

Registered on the `cli` group when newsletter.cli is imported; like every
command, each imports what it needs inside (`newsletter --help` stays fast).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from newsletter.cli import (
    EDITION_CHOICE,
    _config,
    _print_skipped,
    cli,
    date_option,
    handles_errors,
    parse_address,
    parse_week_option,
)

if TYPE_CHECKING:
    from newsletter.config import Config


def _today(config: Config) -> dt.date:
    return dt.datetime.now(config.site.tz).date()


def _print_site(result: Any, dry_run: bool, verbose: bool) -> None:
    from newsletter.logs import printable
    from newsletter.plurals import nouns

    site = result.site
    verb, gone = ("would write", "would delete") if dry_run else ("wrote", "deleted")
    if verbose:
        _print_skipped(result.skipped)
    if verbose or dry_run:
        for path in site.written:
            click.echo(f"  {verb} {path}")
        for path in site.deleted:
            click.echo(f"  {gone} {path}")
    click.echo(
        f"site: {verb} {nouns(len(site.written), 'file', 'files')}, "
        f"{site.unchanged} unchanged, {gone} {len(site.deleted)}"
    )
    for report in result.bad:
        for problem in report.errors:
            click.secho(f"skipped: {printable(str(problem))}", fg="yellow", err=True)
    for warning in result.digest_warnings:
        click.secho(f"warning: {printable(warning)}", fg="yellow", err=True)
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


@cli.command()
@date_option("Issue date (default: today in site.timezone).")
@click.option(
    "--week",
    callback=parse_week_option,
    metavar="YYYY-Www",
    help="Publish a week instead: its weekly pages and feeds, then the weekly email "
    "to weekly subscribers (ISO week, e.g. 2025-W15).",
)
@click.option("--no-email", is_flag=True, help="Publish only the site and feeds.")
@click.option("--dry-run", is_flag=True, help="Write and send nothing; say what would change.")
@click.option("-v", "--verbose", is_flag=True, help="List every file written, deleted or skipped.")
@click.option(
    "--force", is_flag=True, help="Email even an issue older than email.max_lateness_days."
)
@click.pass_context
@handles_errors()
def publish(
    ctx: click.Context,
    date: dt.date | None,
    week: Any,
    no_email: bool,
    dry_run: bool,
    verbose: bool,
    force: bool,
) -> None:
    """Publish one day: its paper links, archive pages, the indexes and feeds, then its email.

    The day's papers not known yet are looked up on arXiv first (at most
    papers.budget_seconds; none with --dry-run); -v lists each paper's link
    or the reason it has none. With --week: one week's weekly pages and feeds
    (with the paper links already known), then its weekly email.
    """
    from newsletter.cli_links import print_links
    from newsletter.publish import publish as publish_date
    from newsletter.publish import publish_week

    config = _config(ctx)
    if week is not None and date is not None:
        raise click.UsageError("give --date or --week, not both")
    options = {"email": not no_email, "dry_run": dry_run, "force": force}
    with _ProgressBar() as progress:
        if week is not None:
            date = week
            result = publish_week(config, week, progress=progress, **options)
        else:
            date = date or _today(config)
            result = publish_date(config, date, progress=progress, **options)
    print_links(result.links, verbose=verbose, dry_run=dry_run)
    _print_site(result, dry_run, verbose)
    if result.delivery is not None:
        _print_delivery(result.delivery, dry_run)
    click.echo(
        f"published {date.isoformat()} to {config.paths.public}"
        if not dry_run
        else f"dry run for {date.isoformat()}: nothing was written or sent"
    )


@cli.command()
@click.option("--dry-run", is_flag=True, help="Write nothing; say what would change.")
@click.option("-v", "--verbose", is_flag=True, help="List every file written, deleted or skipped.")
@click.pass_context
@handles_errors()
def build(ctx: click.Context, dry_run: bool, verbose: bool) -> None:
    """Rebuild the whole site and all feeds from every digest in paths.digests.

    Pages show the paper links already known; then papers never looked up
    (or due for a retry) are looked up, newest issue first, within
    papers.budget_seconds in all, and the pages whose links changed are
    written again. What is left, `newsletter run` looks up.
    """
    from newsletter.cli_links import print_links
    from newsletter.publish import build as build_all

    config = _config(ctx)
    result = build_all(config, dry_run=dry_run)
    print_links(result.links, verbose=verbose, left=result.links_left)
    _print_site(result, dry_run, verbose)
    if result.bad:
        sys.exit(1)


@cli.command()
@date_option("Issue to open (default: the newest).")
@click.option("--edition", type=EDITION_CHOICE, default=None, help="Edition to open.")
@click.option(
    "--port", default=8001, show_default=True, help="Port on 127.0.0.1 (0: any free port)."
)
@click.option("--open/--no-open", "open_browser", default=True, help="Open a browser.")
@click.pass_context
@handles_errors()
def preview(
    ctx: click.Context, date: dt.date | None, edition: str | None, port: int, open_browser: bool
) -> None:
    """Build the site into a temporary folder and serve it on localhost.

    Nothing in paths.public is touched and no email is sent.
    """
    from newsletter.preview import serve_preview

    serve_preview(
        _config(ctx),
        date=date,
        edition=edition,
        port=port,
        open_browser=open_browser,
        echo=click.echo,
    )


class _ProgressBar:
    """A rich progress bar on a terminal; periodic log lines otherwise."""

    def __enter__(self) -> Callable[[int, int], None]:
        self._bar: Any = None
        self._task: Any = None
        self._last_logged = 0.0
        return self.update

    def update(self, done: int, total: int) -> None:
        import time

        if sys.stderr.isatty():
            if self._bar is None:
                from rich.progress import Progress

                self._bar = Progress(transient=True)
                self._bar.start()
                self._task = self._bar.add_task("sending", total=total)
            self._bar.update(self._task, completed=done, total=total)
        elif time.monotonic() - self._last_logged >= 5 or done == total:
            self._last_logged = time.monotonic()
            click.echo(f"sending: {done}/{total}", err=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _print_delivery(report: Any, dry_run: bool) -> None:
    """The delivery's counts; a dry run prints the counts a real run would."""
    from newsletter.plurals import nouns

    if report.too_late:  # said once, naming the flag to type
        click.secho(f"email: {report.note}; add --force to send it anyway", fg="yellow")
        return
    if report.no_issue:
        click.echo(f"email: {report.note}")
        return
    topics = f", {report.filtered} with no paper on their topics" if report.filtered else ""
    if dry_run:
        for edition, addresses in report.recipients.items():
            click.echo(f"  would send {len(addresses)} × {edition}: {', '.join(addresses)}")
        messages = nouns(report.pending_left, "message", "messages")
        click.echo(
            f"email: {messages} would be sent, {report.skipped} skipped (already sent or "
            f"failed){topics}"
        )
        return
    variants = f"; {nouns(report.variants, 'email', 'emails')} rendered" if report.variants else ""
    click.echo(
        f"email: {report.sent} sent, {report.failed} failed, {report.skipped} skipped, "
        f"{report.pending_left} left ({report.messages_per_second:.0f} messages/s){topics}"
        f"{variants}"
    )
    for edition, reply in report.refused.items():
        left = report.per_edition[edition].pending if edition in report.per_edition else 0
        click.secho(
            f"error: the SMTP server refused the {edition} edition's message for "
            f"{report.date.isoformat()}: {reply}",
            fg="red",
            err=True,
        )
        click.echo(
            f"  hint: nobody was marked failed: its {left} message(s) stay pending; fix the "
            "relay (or the message: email.max_bytes), then run publish again to send them",
            err=True,
        )
    if report.pending_left and not report.refused:
        click.secho("  some messages are still pending: run publish again to retry", fg="yellow")
    if report.failed or report.pending_left:
        sys.exit(1)


@cli.command("send-test")
@date_option("Issue date.", required=True)
@click.option("--to", "to", required=True, metavar="ADDRESS", callback=parse_address)
@click.option(
    "--edition",
    "editions",
    type=EDITION_CHOICE,
    multiple=True,
    default=["both"],
    show_default=True,
    help="Edition to send; repeat it for several (one message each).",
)
@click.pass_context
@handles_errors()
def send_test(ctx: click.Context, date: dt.date, to: str, editions: tuple[str, ...]) -> None:
    """Send one copy per edition with [TEST] in the subject; not recorded in the ledger.

    With the file transport each copy is a new file (an earlier test is never
    overwritten); its path is printed.
    """
    from newsletter.deliver.proof import send_test as send_copies
    from newsletter.publish import scan, with_known_links

    config = _config(ctx)
    (digest,) = with_known_links(config, [scan(config).digest_for(date)])
    for proof in send_copies(config, digest, to, editions):
        where = f"written to {proof.path}" if proof.path else f"sent to {to}"
        click.echo(
            f"test message for {date.isoformat()} ({proof.edition.value}) {where} "
            f"(Message-ID {proof.message_id})"
        )

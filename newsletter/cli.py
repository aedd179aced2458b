"""The command line: the `cli` group, its error handling and shared options,
and `check`, `status`, `run` and `serve`.

The other commands are thin click commands in cli_publish.py, cli_subscribers.py,
cli_bounces.py and cli_links.py, registered on `cli` when this module imports
them at its end. Only click and the standard library are imported at module
level, so that `newsletter --help` starts fast; each command imports what it needs.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from newsletter import __version__
from newsletter.errors import ConfigError, NewsletterError, file_error
from newsletter.signals import Terminated, sigterm_is_ctrl_c

if TYPE_CHECKING:
    from newsletter.config import Config

EDITION_CHOICE = click.Choice(["ko", "en", "both"])


class State:
    def __init__(self, config_path: str | None, debug: bool) -> None:
        self.config_path = config_path
        self.debug = debug
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from newsletter.config import load_config

            self._config = load_config(self.config_path)
        return self._config


def _fail(error: NewsletterError, debug: bool, code: int) -> NoReturn:
    from newsletter.logs import json_enabled

    if debug:
        raise error
    if json_enabled():  # --log-format json: this line is JSON too
        import logging

        extra = {"event": "error", "hint": error.hint} if error.hint else {"event": "error"}
        logging.getLogger("newsletter").error("%s", error.message, extra=extra)
        sys.exit(code)
    click.secho(f"error: {error.message}", fg="red", err=True)
    if error.hint:
        click.echo(f"  hint: {error.hint}", err=True)
    sys.exit(code)


def log_format_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--log-format text|json`: with json, every line on stderr is one JSON object."""
    return click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="One line per event on stderr; json: every line one JSON object.",
        callback=_set_log_format,
        expose_value=False,
        is_eager=True,
    )(command)


def _set_log_format(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from newsletter.logs import setup_logging

    setup_logging(value)
    return value


def handles_errors(code: int = 1) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Turn the one user-error type into a message and an exit code (`code`;
    2 for a ConfigError: a weak or missing secret is a configuration error).

    SIGTERM is handled like Ctrl-C (`signals.sigterm_is_ctrl_c`); exit status
    130 after Ctrl-C, 143 after SIGTERM.
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            state = click.get_current_context().find_object(State)
            try:
                with sigterm_is_ctrl_c():
                    return command(*args, **kwargs)
            except ConfigError as error:  # a config or a file it names: usage, exit 2
                _fail(error, bool(state and state.debug), 2)
            except NewsletterError as error:
                _fail(error, bool(state and state.debug), code)
            except OSError as error:
                # A file the command could not read or write (a full disk, a
                # read-only folder) that no code path translated: still one line.
                _fail(file_error(error, doing="use"), bool(state and state.debug), 1)
            except KeyboardInterrupt as stop:
                terminated = isinstance(stop, Terminated)
                click.echo("stopped (SIGTERM)" if terminated else "interrupted", err=True)
                sys.exit(143 if terminated else 130)

        return wrapper

    return decorate


def _config(ctx: click.Context) -> Config:
    """The loaded config; a config error is a usage error (exit 2)."""
    state = ctx.find_object(State)
    assert state is not None
    try:
        return state.config
    except NewsletterError as error:
        _fail(error, state.debug, 2)


def _store(ctx: click.Context) -> Any:
    from newsletter.store import Store

    return Store.open(_config(ctx))


def parse_address(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """An address argument or option: a malformed one is a usage error (exit 2)."""
    from newsletter.store.subscribers import normalize_email

    if value is None:
        return None
    try:
        normalize_email(value)
    except NewsletterError as exc:
        raise click.BadParameter(exc.message) from None
    return value


def parse_date_option(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> dt.date | None:
    from newsletter.model import parse_date

    if value is None:
        return None
    try:
        return parse_date(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def date_option(help: str, required: bool = False) -> Callable[[Any], Any]:
    return click.option(
        "--date",
        "date",
        callback=parse_date_option,
        metavar="YYYY-MM-DD",
        required=required,
        help=help,
    )


def parse_week_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    from newsletter.model import Week

    try:
        return Week.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="newsletter")
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    help="Config file (default: $NEWSLETTER_CONFIG, else ./config.yaml).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, debug: bool) -> None:
    """Bilingual ML paper digests: archive site, Atom/RSS feeds and a daily email."""
    from newsletter.logs import setup_logging

    ctx.obj = State(config_path, debug)
    setup_logging("text")


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per file.")
@click.option("-v", "--verbose", is_flag=True, help="List the files skipped as not digests.")
@click.pass_context
@handles_errors()
def check(ctx: click.Context, paths: tuple[Path, ...], as_json: bool, verbose: bool) -> None:
    """Validate digest files and folders (default: paths.digests).

    Exit status: 0 when every file is good (warnings allowed), 1 when any is
    bad, 2 for usage or config errors.
    """
    from newsletter.digest import check_paths, find_digest_files
    from newsletter.plurals import nouns

    config = _config(ctx)  # a bad config is exit 2 even when paths are given
    from newsletter.mail_checks import setup_warnings

    for warning in setup_warnings(config):
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if not paths:
        if not config.paths.digests.is_dir():
            from newsletter.errors import ConfigError

            raise ConfigError(
                f"the digests folder {config.paths.digests} does not exist (paths.digests)",
                hint="create it, set paths.digests in the config, or name files to check",
            )
        paths = (config.paths.digests,)
    for path in paths:
        if not path.exists():
            raise click.BadParameter(f"{path} does not exist", param_hint="PATH")
    found = find_digest_files(paths)
    reports = check_paths(found.files, config.limits.digest)
    if as_json:
        click.echo(
            json.dumps([_report_json(report) for report in reports], ensure_ascii=False, indent=2)
        )
    else:
        for report in reports:
            _print_report(report)
        if verbose:
            _print_skipped(found.skipped)
        bad = sum(not report.ok for report in reports)
        click.echo(f"{nouns(len(reports), 'file', 'files')} checked, {bad} bad", err=True)
    if not reports:
        click.echo("no digest files found", err=True)
    sys.exit(1 if any(not report.ok for report in reports) else 0)


def _report_json(report: Any) -> dict[str, Any]:
    digest = report.digest
    return {
        "file": report.file,
        "date": digest.date.isoformat() if digest else None,
        "entries": [
            {
                "title": entry.title,
                "authors": list(entry.authors),
                "abstract": entry.abstract,
                "comment_ko": entry.comment_ko,
                "comment_en": entry.comment_en,
                "tags": list(entry.tags),
            }
            for entry in (digest.entries if digest else ())
        ],
        "warnings": [str(problem) for problem in report.warnings],
        "errors": [str(problem) for problem in report.errors],
    }


def _print_report(report: Any) -> None:
    from newsletter.logs import printable  # file names and digest text: no terminal escapes
    from newsletter.plurals import plural

    if report.ok:
        digest = report.digest
        assert digest is not None
        entries = plural(
            len(digest.entries), "en", one="{count:>3} entry", other="{count:>3} entries"
        )
        click.echo(f"{digest.date.isoformat()}  {entries}  {printable(report.file)}")
    for problem in report.errors:
        click.secho(printable(str(problem)), fg="red")
    for problem in report.warnings:
        click.secho(f"  warning: {printable(str(problem))}", fg="yellow")


def _print_skipped(skipped: Any) -> None:
    for item in skipped:
        click.echo(f"skipped {item}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_context
@handles_errors()
def status(ctx: click.Context, as_json: bool) -> None:
    """Last published issue, next send, recent deliveries and bounces, subscribers by state."""
    from newsletter.plurals import nouns
    from newsletter.status import collect_status

    data = collect_status(_config(ctx))
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    click.echo(f"last published: {data['last_published'] or 'none'}")
    upcoming = data["next_send"]
    click.echo(
        f"next send: {upcoming['date']} at {upcoming['at']}" if upcoming else "next send: none"
    )
    weekly = data["next_weekly_send"]
    click.echo(
        f"next weekly send: {weekly['week']} at {weekly['at']}"
        if weekly
        else "next weekly send: none"
    )
    subscribers_text = ", ".join(f"{n} {state}" for state, n in data["subscribers"].items())
    click.echo(f"subscribers: {subscribers_text or 'none'}")
    links = data["links"]
    if links["lookup"] == "off":
        click.echo("paper links: lookups off (papers.lookup)")
    else:
        retry = f"; next retry {links['next_retry']}" if links["next_retry"] else ""
        click.echo(
            f"paper links: {links['found']} found, {links['not_found']} not found, "
            f"{links['failed']} failed{retry}"
        )
    for date, counts in data["deliveries"].items():
        r = data["bounces"][date]
        click.echo(
            f"  {date}: {counts.get('sent', 0)} sent, {counts.get('pending', 0)} pending, "
            f"{counts.get('failed', 0)} failed; "
            f"{nouns(r['hard_bounces'], 'hard bounce', 'hard bounces')} "
            f"({r['hard_bounce_rate']:.2f} %), {r['soft_bounces']} soft, "
            f"{nouns(r['complaints'], 'complaint', 'complaints')} ({r['complaint_rate']:.2f} %)"
        )
    for warning in data["warnings"]:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


# --- the daemon ------------------------------------------------------------------


@cli.command()
@log_format_option
@click.option("-v", "--verbose", is_flag=True, help="Log the files skipped as not digests.")
@click.pass_context
@handles_errors()
def run(ctx: click.Context, verbose: bool) -> None:
    """Watch paths.digests, publish new digests at once, email them at the send time.

    Stops cleanly on SIGTERM or SIGINT. One daemon per state folder.
    """
    from newsletter.scheduler import run_daemon

    config = _config(ctx)
    if config.email.transport == "smtp":
        config.secret(required=True)  # ConfigError (exit 2) now, not at the send time
    run_daemon(config, verbose=verbose)


@cli.command("serve")
@click.option("--host", default=None, metavar="HOST", help="Address to listen on (server.host).")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Port to listen on (server.port)."
)
@log_format_option
@click.pass_context
@handles_errors()
def serve_command(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the subscription web service; it also serves paths.public.

    Needs $NEWSLETTER_SECRET, at least 16 bytes (exit status 2 without it:
    a configuration error). Put it behind a reverse proxy for TLS (see the README). Stops
    cleanly on SIGTERM or SIGINT.
    """
    from newsletter.web.server import serve

    config = _config(ctx)
    config.secret(required=True)  # ConfigError (exit 2) before anything starts
    serve(config, host=host, port=port)


def main() -> None:
    cli(prog_name="newsletter")


# The other commands, registered on `cli` (and its groups) when imported; they
# use the helpers above: publishing, subscribers and the ledger, bounces, links.
from newsletter import cli_bounces, cli_links, cli_publish, cli_subscribers  # noqa: E402, F401

"""The command line: thin click commands over the library.

Only click and the standard library are imported at module level, so that
`newsletter --help` starts fast; each command imports what it needs.
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
STATES = ["pending", "active", "unsubscribed", "bounced", "complained"]


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


# --- publishing: site and feeds ----------------------------------------------


def _today(config: Config) -> dt.date:
    return dt.datetime.now(config.site.tz).date()


def _print_skipped(skipped: Any) -> None:
    for item in skipped:
        click.echo(f"skipped {item}")


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


def parse_week_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    from newsletter.model import Week

    try:
        return Week.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


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


# --- email: subscribers and delivery -----------------------------------------


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


def _store(ctx: click.Context) -> Any:
    from newsletter.store import Store

    return Store.open(_config(ctx))


@cli.group()
def subscribers() -> None:
    """Manage the subscriber list (the list owner's own commands)."""


def _edition_of_config(ctx: click.Context, edition: str | None) -> Any:
    """The chosen edition, or the default (the first of `editions`); exit 2 for an
    edition the config does not publish (its subscribers would get nothing)."""
    from newsletter.model import Edition

    config = _config(ctx)
    if edition is None:
        return config.editions[0]
    if Edition(edition) not in config.editions:
        published = ", ".join(e.value for e in config.editions)
        raise click.BadParameter(
            f"edition {edition!r} is not published (editions: {published})",
            param_hint="--edition",
        )
    return Edition(edition)


def parse_topics_option(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[str, ...] | None:
    """--topics moe,rl (or 'all' for every paper): sorted topic keys."""
    if value is None:
        return None
    from newsletter.model import parse_topics

    if value.strip().lower() in ("all", "*"):
        return ()
    try:
        topics = parse_topics(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not topics:
        raise click.BadParameter("give tags like moe,rl, or 'all' for every paper")
    return topics


def preference_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--cadence and --topics, shared by `subscribers add` and `update`."""
    command = click.option(
        "--topics",
        callback=parse_topics_option,
        metavar="TAG,TAG|all",
        help="Only papers with one of these tags (e.g. moe,rl); 'all' for every paper.",
    )(command)
    return click.option(
        "--cadence",
        type=click.Choice(["daily", "weekly"]),
        default=None,
        help="daily: each issue; weekly: one email a week (schedule.weekly_day). "
        "A change applies from the next weekly period.",
    )(command)


def _preferences(config: Config, cadence: str | None, topics: tuple[str, ...] | None) -> Any:
    from newsletter.cadence import WeeklySchedule
    from newsletter.model import Cadence
    from newsletter.store.subscribers import Preferences

    return Preferences(
        cadence=Cadence(cadence) if cadence else None,
        topics=topics,
        schedule=WeeklySchedule.of(config),
    )


def _describe(subscriber: Any, why: str = "") -> str:
    from newsletter.cadence import describe

    topics = ",".join(subscriber.topics) or "all"
    return (
        f"{subscriber.email}: {subscriber.state.value}, edition {subscriber.edition.value}{why}, "
        f"{describe(subscriber)}, topics {topics}"
    )


@subscribers.command("add")
@click.argument("email", callback=parse_address)
@click.option(
    "--edition",
    type=EDITION_CHOICE,
    default=None,
    help="Edition to receive [default: the first of `editions` in the config, ko unless "
    "changed; an existing subscriber keeps theirs].",
)
@click.option("--name", default="", help="Display name.")
@click.option("--reactivate", is_flag=True, help="Re-subscribe an address that left or bounced.")
@preference_options
@click.pass_context
@handles_errors()
def subscribers_add(
    ctx: click.Context,
    email: str,
    edition: str | None,
    name: str,
    reactivate: bool,
    cadence: str | None,
    topics: tuple[str, ...] | None,
) -> None:
    """Add (or update) an active subscriber.

    A new subscriber is daily with every topic unless --cadence and --topics
    say otherwise; an existing one keeps what it has unless they are given.
    """
    from newsletter.model import SubscriberState

    chosen = _edition_of_config(ctx, edition)
    wanted = _preferences(_config(ctx), cadence, topics)
    with _store(ctx) as store:
        current = store.subscribers.get(email)
        if current is not None and current.state is SubscriberState.COMPLAINED:
            raise NewsletterError(
                f"{current.email} reported our mail as spam (a complaint)",
                hint="if its owner asked, use 'newsletter subscribers reactivate --force'",
            )
        if current is not None and edition is None:
            chosen = current.edition
        subscriber = store.subscribers.add(
            email, chosen, name, reactivate=reactivate, preferences=wanted
        )
    why = ""
    if edition is None:
        why = (
            " (unchanged; choose another with --edition)"
            if current is not None
            else " (the default: the first of `editions`; choose another with --edition)"
        )
    click.echo(_describe(subscriber, why))
    _warn_smtputf8([subscriber.email])


def _warn_smtputf8(addresses: list[str]) -> None:
    """Say now, not at the first send, that these addresses need an SMTPUTF8 relay."""
    from newsletter.headers import smtputf8_warning

    warning = smtputf8_warning(addresses)
    if warning:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


@subscribers.command("update")
@click.argument("email", callback=parse_address)
@click.option("--edition", type=EDITION_CHOICE, default=None, help="Another edition.")
@preference_options
@click.pass_context
@handles_errors()
def subscribers_update(
    ctx: click.Context,
    email: str,
    edition: str | None,
    cadence: str | None,
    topics: tuple[str, ...] | None,
) -> None:
    """Change a subscriber's edition, cadence or topics (what is not given stays).

    A change of cadence applies from the next weekly period, so no day is
    mailed twice or skipped; it says from when.
    """
    if edition is None and cadence is None and topics is None:
        raise click.UsageError("give --edition, --cadence or --topics")
    chosen = _edition_of_config(ctx, edition) if edition is not None else None
    wanted = _preferences(_config(ctx), cadence, topics)
    with _store(ctx) as store:
        subscriber = store.subscribers.set_preferences(email, wanted, edition=chosen)
    click.echo(_describe(subscriber))


@subscribers.command("remove")
@click.argument("email", callback=parse_address)
@click.pass_context
@handles_errors()
def subscribers_remove(ctx: click.Context, email: str) -> None:
    """Unsubscribe an address (its delivery history is kept)."""
    with _store(ctx) as store:
        subscriber = store.subscribers.remove(email)
    click.echo(f"{subscriber.email}: {subscriber.state.value}")


@subscribers.command("list")
@click.option("--state", type=click.Choice(STATES))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
@handles_errors()
def subscribers_list(ctx: click.Context, state: str | None, as_json: bool) -> None:
    """List subscribers."""
    with _store(ctx) as store:
        rows = store.subscribers.list(state=state)
    if as_json:
        data = [
            {
                "email": s.email,
                "edition": s.edition.value,
                "state": s.state.value,
                "name": s.name,
                "cadence": s.cadence.value,
                "topics": list(s.topics),
                "cadence_from": s.cadence_from.isoformat() if s.cadence_from else None,
            }
            for s in rows
        ]
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    from newsletter.plurals import nouns

    for s in rows:
        topics = ",".join(s.topics) or "all"
        click.echo(
            f"{s.email}\t{s.edition.value}\t{s.state.value}\t{s.name}\t{s.cadence.value}\t{topics}"
        )
    click.echo(nouns(len(rows), "subscriber", "subscribers"), err=True)


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
@handles_errors()
def subscribers_import(ctx: click.Context, file: Path) -> None:
    """Import a CSV file: an export as it is, or email,edition[,name] rows.

    Bad rows are reported by line; the good ones are imported. States are kept
    (active when there is none); an address that unsubscribed, bounced or
    complained is never re-subscribed. A row without an edition gets the first of `editions`.
    """
    from newsletter.cadence import WeeklySchedule
    from newsletter.store.subscriber_csv import import_csv

    default = _edition_of_config(ctx, None)
    schedule = WeeklySchedule.of(_config(ctx))
    with _store(ctx) as store:
        report = import_csv(store.subscribers, file, default_edition=default, schedule=schedule)
    for problem in report.problems:
        click.secho(f"{file}:{problem.line}: {problem.reason}: {problem.text}", fg="yellow")
    _warn_smtputf8(list(report.addresses))
    from newsletter.plurals import nouns

    click.echo(
        f"imported {file}: {report.added} added, {report.updated} updated, "
        f"{report.unchanged} unchanged, {nouns(len(report.problems), 'bad row', 'bad rows')}"
    )
    if report.problems:
        sys.exit(1)


@subscribers.command("export")
@click.option("--state", type=click.Choice(STATES))
@click.pass_context
@handles_errors()
def subscribers_export(ctx: click.Context, state: str | None) -> None:
    """Write every subscriber as CSV to standard output; `subscribers import` reads it back.

    Columns: email, edition, name, state, hard_bounces, created_at, updated_at,
    state_changed_at (times in ISO 8601 UTC).
    """
    from newsletter.store.subscriber_csv import export_csv

    with _store(ctx) as store:
        export_csv(store.subscribers, click.get_text_stream("stdout"), state=state)


@cli.group()
def ledger() -> None:
    """Move the delivery ledger (who got which issue) to another database."""


@ledger.command("export")
@click.pass_context
@handles_errors()
def ledger_export(ctx: click.Context) -> None:
    """Write every ledger row and send-once mark as CSV to standard output."""
    from newsletter.store.ledger_csv import export_ledger

    with _store(ctx) as store:
        export_ledger(store.db, click.get_text_stream("stdout"))


@ledger.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
@handles_errors()
def ledger_import(ctx: click.Context, file: Path) -> None:
    """Import a `ledger export`: nothing already sent becomes sendable again."""
    from newsletter.plurals import nouns
    from newsletter.store.ledger_csv import import_ledger

    with _store(ctx) as store:
        added, problems = import_ledger(store.db, file)
    for problem in problems:
        click.secho(f"{file}:{problem.line}: {problem.reason}: {problem.text}", fg="yellow")
    rows, bad = (
        nouns(added, "ledger row", "ledger rows"),
        nouns(len(problems), "bad row", "bad rows"),
    )
    click.echo(f"imported {file}: {rows} added, {bad}")
    if problems:
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


# `bounces process|list`, `subscribers reactivate` and `links refresh|list`
# (they use the helpers above).
from newsletter import cli_bounces, cli_links  # noqa: E402, F401

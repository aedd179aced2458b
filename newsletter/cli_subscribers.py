"""`newsletter subscribers ...` and `newsletter ledger export|import`.

The list owner's commands over the store. Registered on the `cli` group when
newsletter.cli is imported; like every command, each imports what it needs
inside (`newsletter --help` stays fast).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from newsletter.cli import EDITION_CHOICE, _config, _store, cli, handles_errors, parse_address
from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    from newsletter.config import Config

STATES = ["pending", "active", "unsubscribed", "bounced", "complained"]


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

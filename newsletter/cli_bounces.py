"""The bounce commands: `bounces process`, `bounces list`, `subscribers reactivate`.

Thin click commands over `newsletter.bounces`, registered on the `cli` group
and the `subscribers` group of `newsletter.cli_subscribers` (newsletter.cli
imports this module at its end). Only click and the
standard library at module level: `newsletter --help` stays fast.
"""

from __future__ import annotations

import datetime as dt
import json

import click

from newsletter.cli import (
    State,
    _config,
    _fail,
    _store,
    cli,
    handles_errors,
    parse_address,
    parse_date_option,
)
from newsletter.cli_subscribers import subscribers as subscribers_group
from newsletter.errors import NewsletterError
from newsletter.plurals import nouns


@cli.group()
def bounces() -> None:
    """Bounces, complaints and mailto unsubscribes (bounces.mailbox, webhooks)."""


@bounces.command("process")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_context
@handles_errors()
def bounces_process(ctx: click.Context, as_json: bool) -> None:
    """Read bounces.mailbox once: record bounces, complaints and unsubscribes.

    Messages acted on (and auto-replies) are moved to the folder 'processed';
    anything else is left exactly where it was. Nothing is ever deleted.
    """
    from newsletter.bounces.process import process_mailbox

    config = _config(ctx)
    if not config.bounces.mailbox:
        _fail(
            NewsletterError(
                "bounces.mailbox is not set: there is no mailbox to read",
                hint="set it to imaps://USER@HOST/INBOX, maildir:PATH or mbox:PATH "
                "(see 'Bounces and complaints' in the README)",
            ),
            bool(ctx.find_object(State) and ctx.find_object(State).debug),  # type: ignore[union-attr]
            2,
        )
    with _store(ctx) as store:
        report = process_mailbox(config, store)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "mailbox": report.mailbox,
                    "read": report.read,
                    "kinds": report.kinds,
                    "recorded": report.recorded,
                    "duplicates": report.duplicates,
                    "moved": report.moved,
                    "untouched": report.untouched,
                },
                indent=2,
            )
        )
        return
    kinds = ", ".join(f"{n} {kind}" for kind, n in report.kinds.items())
    read = nouns(report.read, "message", "messages")
    click.echo(f"{report.mailbox}: {read} read ({kinds or 'none'})")
    click.echo(
        f"  {nouns(report.recorded, 'event', 'events')} recorded "
        f"({report.duplicates} already known), "
        f"{report.moved} moved to processed, {report.untouched} left untouched"
    )


@bounces.command("list")
@click.option(
    "--since",
    callback=parse_date_option,
    metavar="YYYY-MM-DD",
    help="Only events from this day on (in site.timezone).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
@handles_errors()
def bounces_list(ctx: click.Context, since: dt.date | None, as_json: bool) -> None:
    """Every bounce, complaint, unsubscribe and reactivation, oldest first."""
    config = _config(ctx)
    start = dt.datetime.combine(since, dt.time(), tzinfo=config.site.tz) if since else None
    with _store(ctx) as store:
        events = store.bounces.list(since=start)
    rows = [
        {
            "at": e.at.isoformat() if e.at else None,
            "kind": e.kind.value,
            "email": e.email,
            "issue_date": e.issue_date.isoformat() if e.issue_date else None,
            "edition": e.edition.value if e.edition else None,
            "status": e.status,
            "diagnostic": e.diagnostic,
            "source": e.source,
        }
        for e in events
    ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        # The issue and, when known, its edition: "2025-W14 en", "2025-W14", "-".
        issue = " ".join(str(row[k]) for k in ("issue_date", "edition") if row[k]) or "-"
        click.echo(
            "\t".join(
                [
                    str(row["at"]),
                    row["kind"],
                    row["email"],
                    issue,
                    row["status"] or "-",
                    row["source"],
                    row["diagnostic"][:120],
                ]
            )
        )
    click.echo(nouns(len(rows), "event", "events"), err=True)


@subscribers_group.command("reactivate")
@click.argument("email", callback=parse_address)
@click.option("--force", is_flag=True, help="Also after a spam complaint (its owner asked).")
@click.pass_context
@handles_errors()
def subscribers_reactivate(ctx: click.Context, email: str, force: bool) -> None:
    """Undo a bounce, complaint or unsubscribe: active again, bounce count reset."""
    from newsletter.bounces.policy import reactivate

    with _store(ctx) as store:
        done = reactivate(store, email, force=force)
    bounces = nouns(done.hard_bounces, "hard bounce", "hard bounces")
    click.echo(f"{done.email}: active (was {done.before.value}, {bounces})")

"""`newsletter links refresh|list`, and how `publish` and `build` report links.

Registered on the `cli` group when newsletter.cli is imported; like every
command, each imports what it needs inside.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import click

from newsletter.cli import _config, cli, date_option, handles_errors
from newsletter.errors import ConfigError

if TYPE_CHECKING:
    from newsletter.papers.linking import DigestLinks


def print_links(
    links: tuple[DigestLinks, ...], *, verbose: bool, dry_run: bool = False, left: int = 0
) -> None:
    """One line per digest (counts; with -v, one line per paper with its link
    or the reason it has none), then how many digests are left for `run`."""
    from newsletter.papers.links import LinkStatus
    from newsletter.plurals import nouns

    for found in links:
        known, missing, failed = (found.count(s) for s in LinkStatus)
        later = f"{failed} to look up" if dry_run else f"{failed} failed"
        asked = "" if dry_run else f" ({nouns(found.requests, 'request', 'requests')})"
        click.echo(
            f"links {found.date.isoformat()}: {known} found, {missing} not found, {later}{asked}"
        )
        if verbose:
            for line in paper_lines(found):
                click.echo(f"  {line}")
    if left:
        click.echo(
            f"links: {nouns(left, 'issue', 'issues')} still to look up; "
            "`newsletter run` looks them up, newest first"
        )


def paper_lines(found: DigestLinks) -> list[str]:
    """'N. TITLE: LINK' or 'N. TITLE: no link: REASON' for each paper."""
    from newsletter.papers.links import LinkStatus

    lines = []
    for number, lookup in enumerate(found.lookups, 1):
        title = found.titles[number - 1] if number <= len(found.titles) else ""
        link = lookup.link
        if link is not None:
            where = f"{link.name} ({link.category})" if link.category else link.name
            via = " (override)" if lookup.source == "override" else ""
            lines.append(f"{number}. {title}: {where}{via}")
        elif lookup.status is LinkStatus.NOT_FOUND:
            lines.append(f"{number}. {title}: no link: {lookup.reason}")
        else:
            retry = lookup.retry_after.isoformat() if lookup.retry_after else "the next run"
            lines.append(f"{number}. {title}: not yet: {lookup.reason} (again after {retry})")
    return lines


@cli.group()
def links() -> None:
    """Paper links: arXiv lookups, the cache and the override file (paths.links)."""


@links.command("refresh")
@date_option("Issue whose papers to look up again (default: every issue, newest first).")
@click.option("-v", "--verbose", is_flag=True, help="One line per paper: its link or why none.")
@click.pass_context
@handles_errors()
def links_refresh(ctx: click.Context, date: dt.date | None, verbose: bool) -> None:
    """Look papers up on arXiv again, found ones too, then rewrite the site and feeds.

    Each issue's lookups take at most papers.budget_seconds; after an issue
    whose lookups failed, the rest are left (run it again later). Emails are
    never sent again.
    """
    from newsletter.papers.attach import PaperLinks, lookup_due
    from newsletter.publish import notify_hub, scan
    from newsletter.site import write_site

    config = _config(ctx)
    if config.papers.lookup == "off":
        raise ConfigError(
            "papers.lookup is off: there is nothing to look up",
            hint="set papers.lookup: arxiv in the config (links set by hand are in paths.links)",
        )
    found = scan(config)
    chosen = [found.digest_for(date)] if date else found.digests
    with PaperLinks.open(config) as papers:
        digests = papers.offline(found.digests)
        wanted = {d.date for d in chosen}
        due = lookup_due(
            papers, [d for d in digests if d.date in wanted], budget=float("inf"), refresh=True
        )
        digests = [due.changed.get(d.date, d) for d in digests]
    site = write_site(config, digests, date=None)
    warnings = site.warnings + notify_hub(config, site)
    print_links(due.looked, verbose=verbose, left=due.left)
    click.echo(f"site: wrote {len(site.written)} files, {site.unchanged} unchanged")
    for warning in warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


@links.command("list")
@date_option("Only this issue's papers.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per paper.")
@click.pass_context
@handles_errors()
def links_list(ctx: click.Context, date: dt.date | None, as_json: bool) -> None:
    """Every paper with its link, or why it has none (asks arXiv nothing)."""
    from newsletter.papers.attach import PaperLinks
    from newsletter.publish import scan

    config = _config(ctx)
    found = scan(config)
    chosen = [found.digest_for(date)] if date else found.digests
    with PaperLinks.open(config) as papers:
        papers.offline(chosen)
        known = [papers.known.get(d.date) for d in chosen]
    rows = [
        _row(digest.date, number, entry.title, lookups.lookups[number - 1] if lookups else None)
        for digest, lookups in zip(chosen, known, strict=True)
        for number, entry in enumerate(digest.entries, 1)
    ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        where = (row["arxiv_id"] and f"arXiv:{row['arxiv_id']}") or row["url"] or row["reason"]
        click.echo(f"{row['date']}\t{row['position']}\t{row['status']}\t{where}\t{row['title']}")


def _row(date: dt.date, position: int, title: str, lookup: Any) -> dict[str, Any]:
    link = lookup.link if lookup is not None else None
    retry = lookup.retry_after if lookup is not None else None
    return {
        "date": date.isoformat(),
        "position": position,
        "title": title,
        "status": lookup.status.value if lookup is not None else "not_found",
        "source": lookup.source if lookup is not None else "off",
        "url": link.url if link else None,
        "arxiv_id": link.arxiv_id if link else None,
        "category": link.category if link else None,
        "pdf_url": link.pdf_url if link else None,
        "hf_url": link.hf_url if link else None,
        "reason": lookup.reason if lookup is not None else "paper lookups are off",
        "retry_after": retry.isoformat() if retry else None,
    }

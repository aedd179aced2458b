"""The database and what it keeps, one small module per table concern.

    database.py        Database: engine, migrations on open, the sending lock
    schema.py          every table and every migration, in order
    subscribers.py     Subscribers: the subscriber list
    subscriber_csv.py  CSV import and export of that list
    ledger.py          Ledger: each message's outcome, counts, send-once marks
    plan.py            Plan: who still needs an issue (read from both tables)
    bounces.py         BounceEvents: bounces, complaints, unsubscribes after the send
    links.py           LinkCache: each paper's arXiv lookup (newsletter.papers)

Each of `Subscribers`, `Plan`, `Ledger`, `BounceEvents` and `LinkCache` takes the
`Database`. `Store` only holds them for callers that need more than one; it
forwards nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from newsletter.store.bounces import BounceEvents
from newsletter.store.database import Database
from newsletter.store.ledger import Ledger
from newsletter.store.links import LinkCache
from newsletter.store.plan import Plan
from newsletter.store.subscribers import Subscribers

if TYPE_CHECKING:
    from newsletter.config import Config


class Store:
    """`db`, `subscribers`, `plan`, `ledger`, `bounces` and `links` over one database;
    closes it as a context manager."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.subscribers = Subscribers(db)
        self.plan = Plan(db)
        self.ledger = Ledger(db)
        self.bounces = BounceEvents(db)
        self.links = LinkCache(db)

    @classmethod
    def open(cls, config: Config) -> Store:
        """The configured database (see `Database.open`); NewsletterError if unusable."""
        return cls(Database.open(config))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

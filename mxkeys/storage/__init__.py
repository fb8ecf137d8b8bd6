"""All SQL lives here: one dialect-neutral layer over SQLite and PostgreSQL."""

from __future__ import annotations

from mxkeys.storage.accounts import AccountStore
from mxkeys.storage.database import Database
from mxkeys.storage.uia import UiaStore


class Storage:
    """Every store, sharing one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.accounts = AccountStore(db)
        self.uia = UiaStore(db)

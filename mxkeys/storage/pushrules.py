"""Push rules: each user's own rules and changes to server-default rules, as one JSON
document (its shape belongs to `services.pushrules`), kept in step with the `m.push_rules`
account data entry that carries the full rule set to `/sync`."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mxkeys.storage.account_data import AccountDataStore
from mxkeys.storage.database import Database, dialect_insert
from mxkeys.storage.schema import push_rules, users

PUSH_RULES_TYPE = "m.push_rules"


class PushRulesStore:
    def __init__(self, db: Database, account_data: AccountDataStore) -> None:
        self.db = db
        self.account_data = account_data

    async def get(self, user_id: str) -> str | None:
        def txn(conn: Connection) -> str | None:
            query = sa.select(push_rules.c.rules).where(push_rules.c.user_id == user_id)
            return conn.execute(query).scalar_one_or_none()

        return await self.db.read(txn)

    async def update(self, user_id: str, change: Callable[[str | None], tuple[str, str]]) -> int:
        """Read-modify-write the user's document in one transaction.

        `change(current document or None)` returns (new document, `m.push_rules` content), or
        raises to abort, writing nothing. Returns the account data stream position written.
        """

        def txn(conn: Connection) -> int:
            if self.db.dialect == "postgresql":
                # Serialize this user's rule changes (the document row may not exist yet).
                conn.execute(
                    sa.select(users.c.user_id).where(users.c.user_id == user_id).with_for_update()
                )
            current = conn.execute(
                sa.select(push_rules.c.rules).where(push_rules.c.user_id == user_id)
            ).scalar_one_or_none()
            document, content = change(current)
            stmt = dialect_insert(self.db.dialect, push_rules).values(
                user_id=user_id, rules=document
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["user_id"], set_={"rules": stmt.excluded.rules}
                )
            )
            return self.account_data.put_in(conn, user_id, None, PUSH_RULES_TYPE, content)

        return await self.db.write(txn)

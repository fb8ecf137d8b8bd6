"""Profile fields (profile.yaml): one row per (user, field), the value as JSON text."""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mxkeys.storage.database import Database, dialect_insert
from mxkeys.storage.schema import profiles, users


def profile_size(fields: dict[str, str]) -> int:
    """Bytes of the profile as one JSON object (values are already JSON text)."""
    body = ",".join(f"{json.dumps(k, ensure_ascii=False)}:{v}" for k, v in fields.items())
    return len(("{" + body + "}").encode("utf-8"))


class ProfileStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_fields(self, user_id: str) -> dict[str, str] | None:
        """`{field: JSON text}` of a local user, or None when the user does not exist."""

        def txn(conn: Connection) -> dict[str, str] | None:
            query = (
                sa.select(users.c.user_id, profiles.c.field, profiles.c.value)
                .select_from(users.outerjoin(profiles, profiles.c.user_id == users.c.user_id))
                .where(users.c.user_id == user_id)
                .order_by(profiles.c.field)
            )
            rows = conn.execute(query).all()
            if not rows:
                return None
            return {row.field: row.value for row in rows if row.field is not None}

        return await self.db.read(txn)

    async def set_fields(
        self, user_id: str, changes: dict[str, str | None], max_total_bytes: int
    ) -> tuple[dict[str, str], dict[str, str]] | None:
        """Set (JSON text) or delete (None) fields atomically; returns the profile before and
        after, or None, writing nothing, when it would exceed `max_total_bytes`."""

        def txn(conn: Connection) -> tuple[dict[str, str], dict[str, str]] | None:
            if self.db.dialect == "postgresql":
                # Serialize this user's profile writes so the size check holds.
                conn.execute(
                    sa.select(users.c.user_id).where(users.c.user_id == user_id).with_for_update()
                )
            rows = conn.execute(
                sa.select(profiles.c.field, profiles.c.value).where(profiles.c.user_id == user_id)
            )
            before = {row.field: row.value for row in rows}
            fields = dict(before)
            for name, value in changes.items():
                if value is None:
                    fields.pop(name, None)
                else:
                    fields[name] = value
            if profile_size(fields) > max_total_bytes:
                return None
            deleted = [name for name, value in changes.items() if value is None]
            if deleted:
                conn.execute(
                    profiles.delete().where(
                        profiles.c.user_id == user_id, profiles.c.field.in_(deleted)
                    )
                )
            upserts = [
                {"user_id": user_id, "field": name, "value": value}
                for name, value in changes.items()
                if value is not None
            ]
            if upserts:
                stmt = dialect_insert(self.db.dialect, profiles)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["user_id", "field"], set_={"value": stmt.excluded.value}
                    ),
                    upserts,
                )
            return before, fields

        return await self.db.write(txn)

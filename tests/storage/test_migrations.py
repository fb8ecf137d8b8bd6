from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mxkeys.storage.database import Database
from mxkeys.storage.migrate import upgrade
from mxkeys.storage.schema import metadata


def test_migrated_schema_matches_metadata(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_upgrade_is_idempotent(db: Database) -> None:
    upgrade(db.engine)
    upgrade(db.engine)

"""Bring a database to the newest schema with Alembic, on both backends."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine) -> None:
    """Apply every pending revision (all heads) in one transaction."""
    cfg = alembic_config()
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # Several processes may start at once against one database: migrate one at a time.
            with conn.begin():
                conn.exec_driver_sql("SELECT pg_advisory_lock(7301731)")
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
            conn.commit()
        finally:
            if engine.dialect.name == "postgresql":
                with conn.begin():
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(7301731)")
    logger.info("database schema is up to date")

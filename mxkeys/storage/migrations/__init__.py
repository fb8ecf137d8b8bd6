"""Alembic migrations; `mxkeys.storage.migrate` runs them."""

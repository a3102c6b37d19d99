"""Alembic migrations of the Paperwire store."""

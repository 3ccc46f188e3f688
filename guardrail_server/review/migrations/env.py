"""Alembic environment: always driven programmatically by `ReviewStore.migrate()` with a live connection."""

from __future__ import annotations

from alembic import context

from guardrail_server.review.schema import metadata

VERSION_TABLE = "review_alembic_version"

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()

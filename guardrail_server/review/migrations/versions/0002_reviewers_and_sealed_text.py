"""Reviewers who sign in to the review page, and raw text sealed with the review key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_samples") as batch:
        batch.add_column(sa.Column("sealed", sa.Text, nullable=True))
    op.create_table(
        "review_users",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_table("review_users")
    with op.batch_alter_table("review_samples") as batch:
        batch.drop_column("sealed")

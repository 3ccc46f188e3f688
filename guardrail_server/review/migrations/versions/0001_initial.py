"""Initial review store: samples, annotations and labels, anchor sets, calibration runs, review rounds.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_samples",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("app", sa.String(128), nullable=False, server_default=""),
        sa.Column("decision", sa.String(16), nullable=False, server_default=""),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("reasons", sa.String(64), nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("in_random_slice", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("redacted", sa.Boolean, nullable=False),
        sa.Column("case", sa.JSON, nullable=False),
        sa.Column("verdicts", sa.JSON, nullable=False),
        sa.Column("disagreements", sa.JSON, nullable=False),
    )
    op.create_index("ix_review_samples_created_at", "review_samples", ["created_at"])
    op.create_index("ix_review_samples_reason", "review_samples", ["reason"])
    op.create_index("ix_review_samples_status", "review_samples", ["status"])
    op.create_table(
        "review_annotations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sample_id", sa.String(36), sa.ForeignKey("review_samples.id", ondelete="CASCADE"), nullable=False),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("critique", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("sample_id", "reviewer", name="uq_review_annotations_sample_reviewer"),
    )
    op.create_table(
        "review_labels",
        sa.Column(
            "annotation_id", sa.Integer, sa.ForeignKey("review_annotations.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("invariant", sa.String(64), primary_key=True),
        sa.Column("label", sa.String(8), nullable=False),
    )
    op.create_table(
        "review_anchor_sets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.UniqueConstraint("name", "version", name="uq_review_anchor_sets_name_version"),
    )
    op.create_table(
        "review_anchor_items",
        sa.Column("set_id", sa.Integer, sa.ForeignKey("review_anchor_sets.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "sample_id", sa.String(36), sa.ForeignKey("review_samples.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_table(
        "review_calibration_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("anchor_set_id", sa.Integer, sa.ForeignKey("review_anchor_sets.id"), nullable=True),
        sa.Column("params", sa.JSON, nullable=False),
    )
    op.create_index("ix_review_calibration_runs_created_at", "review_calibration_runs", ["created_at"])
    op.create_table(
        "review_calibration_results",
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("review_calibration_runs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("invariant", sa.String(64), primary_key=True),
        sa.Column("n_train", sa.Integer, nullable=False),
        sa.Column("n_test", sa.Integer, nullable=False),
        sa.Column("threshold_before", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("accuracy", sa.Float, nullable=True),
        sa.Column("accuracy_low", sa.Float, nullable=True),
        sa.Column("accuracy_high", sa.Float, nullable=True),
        sa.Column("kappa", sa.Float, nullable=True),
        sa.Column("kappa_low", sa.Float, nullable=True),
        sa.Column("kappa_high", sa.Float, nullable=True),
        sa.Column("confusion", sa.JSON, nullable=False),
        sa.Column("agrees", sa.Boolean, nullable=False),
    )
    op.create_table(
        "review_rounds",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("anchor_set_id", sa.Integer, sa.ForeignKey("review_anchor_sets.id"), nullable=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested", sa.Integer, nullable=False),
    )
    op.create_index("ix_review_rounds_created_at", "review_rounds", ["created_at"])
    op.create_table(
        "review_round_items",
        sa.Column("round_id", sa.Integer, sa.ForeignKey("review_rounds.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "sample_id", sa.String(36), sa.ForeignKey("review_samples.id", ondelete="CASCADE"), primary_key=True
        ),
    )


def downgrade() -> None:
    for table in (
        "review_round_items", "review_rounds", "review_calibration_results", "review_calibration_runs",
        "review_anchor_items", "review_anchor_sets", "review_labels", "review_annotations",
    ):
        op.drop_table(table)
    for index in ("ix_review_samples_status", "ix_review_samples_reason", "ix_review_samples_created_at"):
        op.drop_index(index, table_name="review_samples")
    op.drop_table("review_samples")

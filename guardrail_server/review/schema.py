"""Tables of the review store. The Alembic migrations in `migrations/versions` create exactly these;
a test compares the migrated database with this metadata so the two cannot drift apart.

Every table is prefixed `review_` so the store can share a database (and its search_path) with other tools.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

samples = sa.Table(
    "review_samples",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("request_id", sa.String(128), nullable=False, server_default=""),
    sa.Column("app", sa.String(128), nullable=False, server_default=""),
    sa.Column("decision", sa.String(16), nullable=False, server_default=""),
    # Highest-priority reason (disagreement < failure < random), then all reasons, comma-separated.
    sa.Column("reason", sa.String(16), nullable=False, index=True),
    sa.Column("reasons", sa.String(64), nullable=False),
    sa.Column("priority", sa.SmallInteger, nullable=False),
    # True iff the uniform random draw selected this case, whatever else did: the unbiased slice.
    sa.Column("in_random_slice", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending", index=True),
    sa.Column("redacted", sa.Boolean, nullable=False),
    sa.Column("case", sa.JSON, nullable=False),
    sa.Column("verdicts", sa.JSON, nullable=False),
    sa.Column("disagreements", sa.JSON, nullable=False),
    # Fernet token of the raw case and verdicts (review.encrypt_raw_text); NULL when not sealed. Migration 0002.
    sa.Column("sealed", sa.Text, nullable=True),
)

annotations = sa.Table(
    "review_annotations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sample_id", sa.String(36), sa.ForeignKey("review_samples.id", ondelete="CASCADE"), nullable=False),
    sa.Column("reviewer", sa.String(128), nullable=False),
    sa.Column("critique", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("sample_id", "reviewer", name="uq_review_annotations_sample_reviewer"),
)

labels = sa.Table(
    "review_labels",
    metadata,
    sa.Column(
        "annotation_id", sa.Integer, sa.ForeignKey("review_annotations.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("invariant", sa.String(64), primary_key=True),
    sa.Column("label", sa.String(8), nullable=False),
)

anchor_sets = sa.Table(
    "review_anchor_sets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint("name", "version", name="uq_review_anchor_sets_name_version"),
)

anchor_items = sa.Table(
    "review_anchor_items",
    metadata,
    sa.Column("set_id", sa.Integer, sa.ForeignKey("review_anchor_sets.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("sample_id", sa.String(36), sa.ForeignKey("review_samples.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
)

calibration_runs = sa.Table(
    "review_calibration_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("source", sa.String(128), nullable=False),
    sa.Column("anchor_set_id", sa.Integer, sa.ForeignKey("review_anchor_sets.id"), nullable=True),
    sa.Column("params", sa.JSON, nullable=False),
)

calibration_results = sa.Table(
    "review_calibration_results",
    metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("review_calibration_runs.id", ondelete="CASCADE"), primary_key=True),
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

rounds = sa.Table(
    "review_rounds",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("anchor_set_id", sa.Integer, sa.ForeignKey("review_anchor_sets.id"), nullable=True),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("requested", sa.Integer, nullable=False),
)

round_items = sa.Table(
    "review_round_items",
    metadata,
    sa.Column("round_id", sa.Integer, sa.ForeignKey("review_rounds.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("sample_id", sa.String(36), sa.ForeignKey("review_samples.id", ondelete="CASCADE"), primary_key=True),
)

# Reviewers of the web page (migration 0002): scrypt password hashes, never passwords.
users = sa.Table(
    "review_users",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
)

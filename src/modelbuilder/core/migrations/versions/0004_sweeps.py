"""Sweeps: a parent run whose children are trials.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

`parent_run_id` ties a trial to its sweep (deleting the sweep deletes its trials); `sweep` holds a
parent's search settings (space, trials, sampling, early termination) and `trial` a child's number and
sampled settings; `termination_reason` is set when the sweep stops a trial early, so that the trial
ends Completed with that reason rather than Canceled.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:  # batch: SQLite adds a foreign key by copying the table
        batch.add_column(sa.Column("parent_run_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("sweep", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("trial", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("termination_reason", sa.Text(), nullable=True))
        batch.create_foreign_key(op.f("fk_runs_parent_run_id_runs"), "runs", ["parent_run_id"], ["id"],
                                 ondelete="CASCADE")
        batch.create_index(op.f("ix_runs_parent_run_id"), ["parent_run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index(op.f("ix_runs_parent_run_id"))
        batch.drop_constraint(op.f("fk_runs_parent_run_id_runs"), type_="foreignkey")
        batch.drop_column("termination_reason")
        batch.drop_column("trial")
        batch.drop_column("sweep")
        batch.drop_column("parent_run_id")

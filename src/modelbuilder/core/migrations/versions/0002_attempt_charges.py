"""Each attempt is charged once, from what the store knows: run_charges, and the lease's last renewal.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

An attempt that ended by kill -9, out of memory or a lost node was never charged: only its worker
charged, on its way out. Now the agent or the reaper charges it from its claim to the last moment it
was known alive (`runs.lease_renewed_at`), once per attempt (the primary key of `run_charges`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("runs", sa.Column("lease_renewed_at", TIMESTAMP, nullable=True))
    op.create_table(
        "run_charges",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("by", sa.String(length=16), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_charges_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "attempt", name=op.f("pk_run_charges")),
    )


def downgrade() -> None:
    op.drop_table("run_charges")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lease_renewed_at")

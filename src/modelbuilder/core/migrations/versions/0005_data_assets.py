"""Data assets: a name with numbered versions of uploaded images, and which runs train on which version.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "data_assets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"],
                                name=op.f("fk_data_assets_workspace_id_workspaces"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_assets")),
        sa.UniqueConstraint("workspace_id", "name", name=op.f("uq_data_assets_workspace_id_name")),
    )
    op.create_table(
        "data_versions",
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["data_assets.id"],
                                name=op.f("fk_data_versions_asset_id_data_assets"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("asset_id", "version", name=op.f("pk_data_versions")),
    )
    op.create_table(
        "run_data",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_data_run_id_runs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["asset_id"], ["data_assets.id"], name=op.f("fk_run_data_asset_id_data_assets"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_data")),
    )
    op.create_index(op.f("ix_run_data_asset_id"), "run_data", ["asset_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_run_data_asset_id"), table_name="run_data")
    op.drop_table("run_data")
    op.drop_table("data_versions")
    op.drop_table("data_assets")

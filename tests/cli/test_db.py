"""`modelbuilder db current|upgrade`, and what every command says on a store whose schema is behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modelbuilder.core import store as store_module
from modelbuilder.core.store import head_revision
from tests.cli.driver import Cli


def test_current_and_upgrade_on_a_fresh_home(cli: Cli) -> None:
    head = head_revision()
    assert cli("db", "current").ok().stdout.strip() == (
        "store schema: none (no schema yet; the first command that uses the store creates it)")
    assert cli("db", "upgrade").ok().stdout.strip() == f"store schema: none -> {head}"
    assert cli("db", "current").ok().stdout.strip() == f"store schema: {head} (up to date)"
    assert cli("db", "upgrade").ok().stdout.strip() == f"store schema: {head} -> {head}"  # idempotent


@pytest.fixture
def newer_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """This code with one migration more than the stores made so far, as after upgrading modelbuilder."""
    folder = tmp_path / "migrations"
    shutil.copytree(store_module.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    head = head_revision()
    (folder / "versions" / "9000_cli_test.py").write_text(
        "import sqlalchemy as sa\nfrom alembic import op\n"
        f"revision = '9000'\ndown_revision = '{head}'\nbranch_labels = None\ndepends_on = None\n"
        "def upgrade():\n"
        "    op.create_table('upgrade_probe', sa.Column('id', sa.Integer, primary_key=True))\n"
        "def downgrade():\n    op.drop_table('upgrade_probe')\n"
    )
    monkeypatch.setattr(store_module, "MIGRATIONS", folder)
    return "9000"


@pytest.mark.parametrize(
    "command",
    [["workspace", "list"], ["workspace", "show", "--json"], ["compute", "list"], ["experiment", "list"],
     ["workspace", "create", "team", "--region", "local", "--resource-group", "g"]],
    ids=lambda command: " ".join(command[:2]),
)
def test_a_store_behind_the_code_makes_commands_ask_for_db_upgrade(
    cli: Cli, command: list[str], request: pytest.FixtureRequest
) -> None:
    old = head_revision()
    cli("workspace", "create", "team", "--region", "local", "--resource-group", "g").ok()  # a store at `old`
    new = request.getfixturevalue("newer_code")

    line = cli(*command).user_error(f"schema revision {old}", f"needs {new}", "modelbuilder db upgrade")
    assert "--home" in line
    assert cli("db", "current").ok().stdout.strip() == (
        f"store schema: {old} (this modelbuilder expects {new}; 'modelbuilder db upgrade' brings an older "
        "store up to date)")

    assert cli("db", "upgrade").ok().stdout.strip() == f"store schema: {old} -> {new}"
    assert [w["name"] for w in cli("workspace", "list", "--json").json()] == ["team"]  # kept, and usable again

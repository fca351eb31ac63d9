from __future__ import annotations

import multiprocessing
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from filelock import FileLock

from modelbuilder.core import _rows as r
from modelbuilder.core import store as store_module
from modelbuilder.core.store import Store, current_revision, head_revision, upgrade
from modelbuilder.errors import AlreadyExists, InvalidInput, SchemaOutOfDate, StoreUnavailable, step


def test_a_new_store_is_created_at_head(store: Store, store_url: str) -> None:
    assert store.current_revision() == head_revision() == current_revision(store_url)
    Store.open(store_url).close()  # opening again neither migrates nor complains


def test_the_migrations_build_exactly_the_rows_the_code_uses(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, r.Base.metadata) == []


def test_the_default_store_lives_in_the_home_folder(home: Path) -> None:
    with Store.open() as store:
        assert store.dialect == "sqlite"
    assert (home / "modelbuilder.db").is_file()


def test_sqlite_is_tuned_for_many_processes(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'x.db'}") as store:
        statements: list[str] = []
        sa.event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        with store.read() as session:
            assert session.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
            assert session.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
            assert session.execute(sa.text("PRAGMA busy_timeout")).scalar() == 30_000
        with store.write() as session:
            session.execute(sa.text("SELECT 1"))
        assert statements.count("BEGIN") == 1
        assert statements.count("BEGIN IMMEDIATE") == 1


def test_a_writer_waits_for_another_writer_instead_of_failing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with Store.open(url) as first, Store.open(url) as second:
        held = threading.Event()
        let_go: list[float] = []

        def hold() -> None:
            with first.write() as session:
                session.add(
                    r.WorkspaceRow(
                        id="ws-1",
                        name="one",
                        region="local",
                        resource_group="g",
                        created_at=datetime.now(UTC),
                    )
                )
                session.flush()
                held.set()
                time.sleep(0.5)
                let_go.append(time.monotonic())  # the commit follows

        thread = threading.Thread(target=hold)
        thread.start()
        assert held.wait(30)
        with second.write() as session:  # BEGIN IMMEDIATE waits on the busy timeout, then proceeds
            count = session.scalar(sa.select(sa.func.count()).select_from(r.WorkspaceRow))
            went_on = time.monotonic()
        thread.join()
        assert went_on > let_go[0]  # it waited for the first writer, however long that took
        assert count == 1  # and it saw the first writer's commit: it began after it


def test_timestamps_come_back_aware_in_utc(store: Store) -> None:
    local = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    with store.write() as session:
        session.add(r.WorkspaceRow(id="ws-1", name="one", region="local", resource_group="g", created_at=local))
    with store.read() as session:
        created = session.get_one(r.WorkspaceRow, "ws-1").created_at
    assert created == local
    assert created.tzinfo is not None
    assert created.utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused(store: Store) -> None:
    with pytest.raises(sa.exc.StatementError), store.write() as session:
        session.add(
            r.WorkspaceRow(id="ws-1", name="one", region="local", resource_group="g", created_at=datetime(2026, 1, 1))
        )  # noqa: DTZ001


def test_unique_violations_become_already_exists(store: Store) -> None:
    now = datetime.now(UTC)
    with store.write() as session:
        session.add(r.WorkspaceRow(id="ws-1", name="one", region="local", resource_group="g", created_at=now))
    with pytest.raises(AlreadyExists), store.write() as session:
        session.add(r.WorkspaceRow(id="ws-2", name="one", region="local", resource_group="g", created_at=now))


def test_a_store_newer_than_the_code_asks_to_upgrade_modelbuilder(store: Store, store_url: str) -> None:
    with store.write() as session:
        session.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaOutOfDate) as caught:
        Store.open(store_url)
    assert "9999" in caught.value.message
    assert "pip install -U modelbuilder" in caught.value.hint


@pytest.fixture
def newer_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """This code, with one migration more than the stores made so far: as after upgrading modelbuilder."""
    folder = tmp_path / "migrations"
    shutil.copytree(store_module.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    head = head_revision()
    newer = f"{int(head) + 1:04d}"
    (folder / "versions" / f"{newer}_test.py").write_text(
        "import sqlalchemy as sa\nfrom alembic import op\n"
        f"revision = '{newer}'\ndown_revision = '{head}'\nbranch_labels = None\ndepends_on = None\n"
        "def upgrade():\n"
        "    op.create_table('upgrade_probe', sa.Column('id', sa.Integer, primary_key=True))\n"
        "def downgrade():\n    op.drop_table('upgrade_probe')\n"
    )
    monkeypatch.setattr(store_module, "MIGRATIONS", folder)
    return newer


def test_a_store_behind_the_code_is_not_upgraded_silently(store: Store, store_url: str, newer_code: str) -> None:
    store.close()
    made_at = current_revision(store_url)
    with pytest.raises(SchemaOutOfDate) as caught:
        Store.open(store_url)
    assert made_at is not None
    assert made_at in caught.value.message
    assert newer_code in caught.value.message
    assert "upgrade its schema" in caught.value.hint
    assert "MODELBUILDER_DB_URL" in caught.value.hint
    assert caught.value.steps == {"upgrade": step("upgrade_store"), "home": step("choose_home")}
    assert current_revision(store_url) == made_at

    assert upgrade(store_url) == (made_at, newer_code)
    with Store.open(store_url) as upgraded:
        assert upgraded.current_revision() == newer_code
        with upgraded.read() as session:
            assert session.execute(sa.text("SELECT count(*) FROM upgrade_probe")).scalar() == 0
    assert upgrade(store_url) == (newer_code, newer_code)  # idempotent


def test_unsupported_urls_are_refused() -> None:
    with pytest.raises(InvalidInput, match="mysql"):
        Store.open("mysql://root@localhost/x")
    with pytest.raises(InvalidInput):
        Store.open("not a url")


def test_an_unreachable_postgresql_names_the_fix() -> None:
    with pytest.raises(StoreUnavailable) as caught:
        Store.open("postgresql://nobody:secret@127.0.0.1:1/x")
    assert "secret" not in str(caught.value)
    assert "MODELBUILDER_DB_URL" in caught.value.hint


def test_an_unwritable_sqlite_folder_names_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreUnavailable) as caught:
        Store.open(f"sqlite:///{blocker / 'x.db'}")
    assert "MODELBUILDER_HOME" in caught.value.hint
    assert caught.value.steps == {"home": step("choose_home")}


def test_plain_postgresql_urls_use_psycopg() -> None:
    assert store_module._parse_url("postgresql://u@h/db").drivername == "postgresql+psycopg"


def test_a_first_migration_waits_for_another_process_then_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MIGRATION_WAIT_S", 0.3)
    holder = multiprocessing.get_context("spawn").Process(target=_hold_lock, args=(str(tmp_path),))
    holder.start()
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "held").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(StoreUnavailable, match="migrating"):
            Store.open(f"sqlite:///{tmp_path / 'x.db'}")
    finally:
        holder.terminate()
        holder.join()
    with Store.open(f"sqlite:///{tmp_path / 'x.db'}") as store:  # the holder is gone: it goes ahead
        assert store.current_revision() == head_revision()


def _hold_lock(folder: str) -> None:
    with FileLock(str(Path(folder) / ".migrate.lock")):
        (Path(folder) / "held").write_text("")
        time.sleep(60)

"""The store: one SQLAlchemy engine, one managed session per service call, schema through Alembic.

`Store.open(url)` picks the backend from the URL: SQLite (the default, a file under the home folder)
or PostgreSQL (`postgresql+psycopg://...`, for a team server). Services open a session with
`store.write()` or `store.read()`; both map database errors to typed `modelbuilder.errors`.

SQLite is tuned for many processes on one host: WAL (readers never wait for writers), a 30 s busy
timeout, and `BEGIN IMMEDIATE` for every write transaction, so a writer takes the write lock up front
and waits its turn instead of failing half-way with "database is locked". SQLAlchemy's documented
recipe is used: sqlite3's own transaction handling is switched off and the `begin` event emits BEGIN.

A brand-new store is migrated to the newest schema on open, under a lock (a file lock next to the
SQLite file, an advisory lock on PostgreSQL). An existing store that is behind is never upgraded
silently: opening it raises `SchemaOutOfDate` naming `modelbuilder db upgrade`, which calls `upgrade()`.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from filelock import FileLock, Timeout
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from modelbuilder.config import get_settings
from modelbuilder.errors import AlreadyExists, Conflict, InvalidInput, SchemaOutOfDate, StoreUnavailable, step

MIGRATIONS = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_S = 30.0
MIGRATION_WAIT_S = 120
# Any fixed 64-bit number; every modelbuilder process migrating one PostgreSQL database takes it.
_PG_MIGRATION_LOCK = 0x6D6F64656C62
# Upgrading the schema, pointed at the same store.
_UPGRADE = ("upgrade its schema ({upgrade}), with the same MODELBUILDER_HOME or MODELBUILDER_DB_URL ({home}).",
            {"upgrade": step("upgrade_store"), "home": step("choose_home")})
_HOME = {"home": step("choose_home")}


def _alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "the migrations folder has no revision"
    return head


def _parse_url(url: str | None) -> URL:
    text = url or get_settings().store_url
    try:
        parsed = make_url(text)
    except exc.ArgumentError:
        raise InvalidInput(
            "The store URL is not valid.", "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB."
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise InvalidInput(
            f"Store URL scheme {parsed.drivername!r} is not supported.",
            "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB.",
        )
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() == "postgresql":
        return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    path = _sqlite_file(url)
    if path is None:  # an in-memory store: one shared connection, for quick experiments only
        engine = sa.create_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S}
        )
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreUnavailable(
                f"Cannot make the store's folder {str(path.parent)!r} ({error.strerror}).",
                "pick a writable MODELBUILDER_HOME ({home}).", _HOME,
            ) from None
        engine = sa.create_engine(url.set(database=str(path)), connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _enter_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable across crashes of the process in WAL mode
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("modelbuilder_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _enter_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL (persistent, so once per file), retrying while another process holds it.

    Entering WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at once rather than calling
    the busy handler when the wait could deadlock: eight processes opening a brand-new store together
    saw "database is locked" here. Retrying with a short jittered sleep, up to the busy timeout, does
    what the busy handler would have.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error).lower() or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.01, 0.1))


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _translate(error: exc.SQLAlchemyError, url: URL) -> Exception:
    """A database error as the typed error a user can act on; anything else (our bug) is returned as is."""
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip()
    text = text.splitlines()[0] if text else type(error).__name__
    lowered = text.lower()
    shown = _shown(url)
    if isinstance(error, exc.IntegrityError):
        if "unique" in lowered or "duplicate" in lowered:
            return AlreadyExists(f"That already exists ({text}).", "use another name or key.")
        return Conflict(f"The change conflicts with the stored state ({text}).", "reload and try again.")
    if not isinstance(error, exc.OperationalError | exc.InterfaceError | exc.ProgrammingError):
        return error
    if "locked" in lowered or "busy" in lowered or "lock timeout" in lowered:
        return StoreUnavailable(
            f"The store {shown} stayed locked for {BUSY_TIMEOUT_S:.0f} s ({text}).",
            "retry; if it persists, stop the process that holds a long write on it.",
        )
    if "database" in lowered and "does not exist" in lowered:
        return StoreUnavailable(
            f"The database of the store {shown} does not exist ({text}).",
            "create it (for example 'createdb NAME'), or fix MODELBUILDER_DB_URL.",
        )
    if any(gap in lowered for gap in ("no such table", "no such column", "does not exist")):
        return SchemaOutOfDate(f"The store {shown} lacks part of its schema ({text}).", *_UPGRADE)
    if isinstance(error, exc.ProgrammingError):
        return error
    if url.get_backend_name() == "postgresql":
        return StoreUnavailable(
            f"Cannot reach the store {shown} ({text}).",
            "start the PostgreSQL server, or point MODELBUILDER_DB_URL at a reachable one.",
        )
    return StoreUnavailable(
        f"Cannot use the store {shown} ({text}).",
        "check that its folder exists and is writable, or pick another MODELBUILDER_HOME ({home}).", _HOME,
    )


@contextmanager
def _mapped_errors(url: URL) -> Iterator[None]:
    try:
        yield
    except exc.SQLAlchemyError as error:
        translated = _translate(error, url)
        if translated is error:
            raise
        raise translated from error


class Store:
    """An open store. Not fork-safe: open one per process (spawned workers open their own)."""

    def __init__(self, engine: Engine, url: URL) -> None:
        self.engine = engine
        self.url = url
        self._write_engine = engine.execution_options(modelbuilder_write=True)

    # --- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str | None = None, *, migrate: bool = True) -> Store:
        """Open the store at `url` (default: the settings' store URL); create a brand-new one at head."""
        parsed = _parse_url(url)
        store = cls(_create_engine(parsed), parsed)
        try:
            store._check_schema(create=migrate)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    # --- sessions -----------------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction (SQLite: BEGIN IMMEDIATE); commits on success, rolls back on error."""
        with _mapped_errors(self.url), Session(self._write_engine, expire_on_commit=False) as session:
            with session.begin():
                yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """One read transaction; a consistent snapshot, never blocked by writers in WAL mode."""
        with _mapped_errors(self.url), Session(self.engine, expire_on_commit=False) as session:
            with session.begin():
                yield session

    def insert(self, table: Any) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that knows ON CONFLICT for this backend (both speak the same dialect of it)."""
        return postgresql.insert(table) if self.is_postgres else sqlite.insert(table)

    # --- schema -------------------------------------------------------------------------------------
    def current_revision(self) -> str | None:
        with _mapped_errors(self.url), self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def _check_schema(self, create: bool) -> None:
        revision = self.current_revision()
        if revision is None and create:
            revision = self._migrate(only_if_new=True)
        _require_head(revision, self.url)

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        path = _sqlite_file(self.url) if self.dialect == "sqlite" else None
        if path is None:
            yield
            return
        lock = FileLock(str(path.parent / ".migrate.lock"), timeout=MIGRATION_WAIT_S)
        try:
            lock.acquire()
        except Timeout:
            raise StoreUnavailable(
                f"Another process has been migrating the store {_shown(self.url)} for {MIGRATION_WAIT_S} s.",
                "wait for the other modelbuilder process to finish, then try again.",
            ) from None
        try:
            yield
        finally:
            lock.release()

    def _migrate(self, only_if_new: bool) -> str | None:
        """Upgrade to head under the migration lock; with `only_if_new`, only a store with no schema."""
        with _mapped_errors(self.url), self._migration_lock():
            with self._write_engine.connect() as conn, conn.begin():
                if self.is_postgres:
                    conn.execute(sa.text(f"SET LOCAL lock_timeout = '{MIGRATION_WAIT_S}s'"))
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
                revision = MigrationContext.configure(conn).get_current_revision()
                if only_if_new and revision is not None:
                    return revision  # another process created it while we waited for the lock
                _require_known(revision, self.url)
                command.upgrade(_alembic_config(conn), "head")
                return MigrationContext.configure(conn).get_current_revision()


def _require_known(revision: str | None, url: URL) -> None:
    if revision is None:
        return
    try:
        ScriptDirectory.from_config(_alembic_config()).get_revision(revision)
    except CommandError:
        raise SchemaOutOfDate(
            f"The store {_shown(url)} has schema revision {revision}, newer than this modelbuilder knows.",
            "upgrade modelbuilder (pip install -U modelbuilder) to the version that wrote this store.",
        ) from None


def _require_head(revision: str | None, url: URL) -> None:
    head = head_revision()
    if revision == head:
        return
    _require_known(revision, url)
    raise SchemaOutOfDate(
        f"The store {_shown(url)} has schema revision {revision or 'none'}, this modelbuilder needs {head}.",
        *_UPGRADE,
    )


def current_revision(url: str | None = None) -> str | None:
    """The schema revision of the store at `url` (None: no schema yet); does not migrate."""
    parsed = _parse_url(url)
    store = Store(_create_engine(parsed), parsed)
    try:
        return store.current_revision()
    finally:
        store.close()


def upgrade(url: str | None = None) -> tuple[str | None, str]:
    """Bring the store at `url` to the newest schema (what `modelbuilder db upgrade` runs).

    Returns (revision before, revision after). Safe to run while nothing else writes; idempotent.
    """
    parsed = _parse_url(url)
    store = Store(_create_engine(parsed), parsed)
    try:
        before = store.current_revision()
        after = store._migrate(only_if_new=False)
        assert after is not None
        return before, after
    finally:
        store.close()

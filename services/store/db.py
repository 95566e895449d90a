"""Engine and session setup for SQLite (embedded default) and PostgreSQL (production).

SQLite allows one writer at a time. Write sessions start with ``BEGIN IMMEDIATE`` (they take the write lock up
front, so two read-modify-write transactions cannot lose an update); read-only sessions (``make_read_sessionmaker``)
start a plain deferred transaction, so reads never wait for a long write such as an import. Within a process, write
transactions queue on one lock per engine before ``BEGIN IMMEDIATE`` (released when they end), so they wait their
turn instead of spinning in SQLite's busy handler; other processes still meet the busy timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import PoolProxiedConnection

PING_IDLE_S = 1.0  # a PostgreSQL connection idle in the pool this long is pinged before use (replaced if dead)
IDLE_SINCE = "latfarm_idle_since"  # connection info: when it was returned to the pool (monotonic s)
READ_ONLY = "latfarm_read_only"  # execution option marking a read-only engine
WRITER = "latfarm_writer"  # connection info: this connection holds its engine's SQLite write turn
WRITER_WAIT_S = 30.0  # a write transaction waits this long for its turn (as long as SQLite's busy timeout)
# The database could not serve a statement (connection lost, server restarting, SQLite locked past its busy
# timeout): clients are told it is unavailable and to retry, never the driver's message or the database address.
DATABASE_DOWN = (OperationalError, InterfaceError)
UNAVAILABLE_MESSAGE = "the database is unavailable; retry later"


def make_engine(url: str) -> Engine:
    """An engine tuned per backend: SQLite gets WAL, a busy timeout and foreign keys; a PostgreSQL connection that
    sat in the pool for ``PING_IDLE_S`` is pinged before use and replaced if dead (one that was in use a moment ago
    is not: under load most checkouts skip the round trip; a connection lost meanwhile fails its statement, and the
    pool then replaces every connection older than the failure)."""
    if url.startswith("sqlite"):
        # SQLite connections are cheap to keep: a pool as large as the REST threads' burst, so requests do not
        # open (and run the pragmas of) a new connection each time the default 5 are in use
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20, max_overflow=40
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            dbapi_conn.isolation_level = None  # pysqlite must not defer BEGIN past the first SELECT (lost updates)

        writer = threading.Lock()  # may be released by another thread than its taker (a connection's checkin)

        def _release(info: dict) -> None:
            if info.pop(WRITER, False):
                writer.release()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:
            if conn.get_execution_options().get(READ_ONLY, False):
                conn.exec_driver_sql("BEGIN")
                return
            if not writer.acquire(timeout=WRITER_WAIT_S):
                raise OperationalError("BEGIN IMMEDIATE", None, TimeoutError(f"no write turn in {WRITER_WAIT_S} s"))
            conn.info[WRITER] = True
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                _release(conn.info)
                raise

        @event.listens_for(engine, "commit")
        def _sqlite_commit(conn) -> None:  # commit here, so the next writer's BEGIN finds the database free
            try:
                conn.connection.dbapi_connection.commit()
            finally:
                _release(conn.info)

        @event.listens_for(engine, "rollback")
        def _sqlite_rollback(conn) -> None:
            if conn.invalidated:  # an error inside a statement (Ctrl-C) dropped the connection, and the turn with it
                return
            try:
                if conn.info.get(WRITER) and (dbapi := conn.connection.dbapi_connection) is not None:
                    dbapi.rollback()
            finally:
                _release(conn.info)

        def _lapsed(_dbapi, record, *_) -> None:  # a transaction that ended without commit or rollback
            if record is not None:
                _release(record.info)

        for lapse in ("checkin", "invalidate", "close"):
            event.listen(engine.pool, lapse, _lapsed)

        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20)

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn, record) -> None:
        record.info[IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn, record, _proxy) -> None:
        idle_since = record.info.get(IDLE_SINCE)  # absent: connected just now
        if idle_since is None or time.monotonic() - idle_since < PING_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as err:  # noqa: BLE001 - any failure: the pool replaces the connection (DisconnectionError)
            raise DisconnectionError(f"connection idle for over {PING_IDLE_S} s failed its ping") from err

    return engine


@contextmanager
def dbapi_connection(engine: Engine) -> Iterator[PoolProxiedConnection]:
    """A pooled DB-API connection of ``engine``, back in the pool on exit: a statement run on it skips the ORM
    and SQLAlchemy's execution (about a tenth of a session's cost). Raises what the pool or the driver raises
    when the database does not answer."""
    connection = engine.raw_connection()
    try:
        yield connection
    finally:
        connection.close()


def detached_connection(engine: Engine) -> PoolProxiedConnection:
    """A DB-API connection of ``engine`` (set up as the pool's are) that the pool no longer lends or counts: for
    one owner's use alone; ``close`` closes it."""
    connection = engine.raw_connection()
    connection.detach()
    return connection


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions for writes; objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def make_read_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions for reading only: on SQLite they neither take nor wait for the write lock."""
    return sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with factory() as session, session.begin():
        yield session

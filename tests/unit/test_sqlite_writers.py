"""SQLite write transactions of one process take turns on one lock instead of spinning in the busy handler."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from latfarm.services.store import db
from latfarm.services.store.db import make_engine, make_read_sessionmaker, make_sessionmaker, transaction
from latfarm.services.store.migrate import upgrade
from latfarm.services.store.models import Device


def test_concurrent_writers_take_turns_and_lose_no_update(sqlite_url):
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as s:
        s.add(Device(name="counter", description="0"))

    def bump() -> None:
        for _ in range(20):
            with transaction(sessions) as s:
                device = s.scalars(select(Device).where(Device.name == "counter")).one()
                device.description = str(int(device.description) + 1)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with make_read_sessionmaker(engine)() as s:
        assert s.scalar(select(Device.description).where(Device.name == "counter")) == "160"
    engine.dispose()


def test_a_writer_waits_for_the_turn_and_reads_do_not(sqlite_url, monkeypatch):
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    sessions, reads = make_sessionmaker(engine), make_read_sessionmaker(engine)
    monkeypatch.setattr(db, "WRITER_WAIT_S", 0.3)
    with transaction(sessions) as s:
        s.add(Device(name="held"))
        s.flush()
        with reads() as r:  # a read neither takes nor waits for the turn
            assert r.scalars(text("select name from devices")).all() == []
        started = time.monotonic()
        waited: list[BaseException] = []

        def write() -> None:
            try:
                with transaction(sessions) as other:
                    other.add(Device(name="second"))
            except OperationalError as err:
                waited.append(err)

        thread = threading.Thread(target=write)
        thread.start()
        thread.join(10)
        assert len(waited) == 1 and "no write turn" in str(waited[0])  # DATABASE_DOWN: answered as unavailable
        assert 0.25 < time.monotonic() - started < 5
    with transaction(sessions) as s:  # the turn came back when the first transaction committed
        s.add(Device(name="third"))
    with reads() as r:
        assert sorted(r.scalars(text("select name from devices")).all()) == ["held", "third"]
    engine.dispose()


def test_a_failed_or_abandoned_write_gives_the_turn_back(sqlite_url):
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    sessions = make_sessionmaker(engine)
    with pytest.raises(ValueError), transaction(sessions) as s:
        s.add(Device(name="rolled back"))
        s.flush()
        raise ValueError("boom")
    conn = engine.connect()
    conn.begin()
    conn.exec_driver_sql("select 1")
    conn.invalidate()  # a lost connection: neither commit nor rollback runs
    with transaction(sessions) as s:  # would wait WRITER_WAIT_S and fail if the turn had leaked
        s.add(Device(name="after"))
    with sessions() as s:
        assert s.scalars(text("select name from devices")).all() == ["after"]
    engine.dispose()

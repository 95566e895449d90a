"""Reads never wait for a writer: a long write transaction (an import, say) must not stall the REST API."""

from __future__ import annotations

import time

from sqlalchemy import text

from latfarm.services.store.db import make_engine, make_read_sessionmaker, make_sessionmaker, transaction
from latfarm.services.store.migrate import upgrade
from latfarm.services.store.models import Device
from tests.api_support import ADMIN, add_device


def test_a_read_session_does_not_wait_for_an_open_write(sqlite_url):
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    write, read = make_sessionmaker(engine), make_read_sessionmaker(engine)
    with transaction(write) as writer:
        writer.add(Device(name="pending"))
        writer.flush()  # the write lock is held until this block ends
        start = time.perf_counter()
        with read() as reader:
            names = reader.scalars(text("select name from devices")).all()
        assert time.perf_counter() - start < 1.0  # a writer-style session would wait up to the 30 s busy timeout
        assert names == []  # the uncommitted row is not visible
    with read() as reader:
        assert reader.scalars(text("select name from devices")).all() == ["pending"]
    engine.dispose()


def test_get_requests_answer_while_a_write_is_open(api, db_url):
    add_device(api, "dev1")
    with transaction(api.app.state.sessions) as writer:
        writer.add(Device(name="dev2"))
        writer.flush()
        start = time.perf_counter()
        response = api.get("/v1/devices", headers=ADMIN)
        assert response.status_code == 200, response.text
        assert [d["name"] for d in response.json()] == ["dev1"]
        assert time.perf_counter() - start < 5.0
    assert {d["name"] for d in api.get("/v1/devices", headers=ADMIN).json()} == {"dev1", "dev2"}

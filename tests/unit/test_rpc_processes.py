"""How many processes serve gRPC: the setting, the default per backend, SQLite's limit of one."""

from __future__ import annotations

import pytest

from latfarm.services.core.config import Settings
from latfarm.services.core.errors import InvalidArgument
from latfarm.services.rpc.processes import AUTO_MAX, grpc_processes

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"


def test_the_default_is_one_per_cpu_up_to_a_few_on_postgresql_with_redis(tmp_path):
    settings = Settings(data_dir=tmp_path, db_url=PG, redis_url=REDIS)
    assert [grpc_processes(settings, cpus) for cpus in (1, 2, AUTO_MAX, 64)] == [1, 2, AUTO_MAX, AUTO_MAX]


def test_the_default_is_one_without_redis_or_on_sqlite(tmp_path):
    assert grpc_processes(Settings(data_dir=tmp_path, db_url=PG), 8) == 1
    assert grpc_processes(Settings(data_dir=tmp_path, redis_url=REDIS), 8) == 1


def test_a_set_count_is_kept_but_sqlite_refuses_more_than_one(tmp_path):
    assert grpc_processes(Settings(data_dir=tmp_path, db_url=PG, grpc_processes=6), 2) == 6
    assert grpc_processes(Settings(data_dir=tmp_path, grpc_processes=1), 8) == 1
    with pytest.raises(InvalidArgument, match="LATFARM_GRPC_PROCESSES=2 needs PostgreSQL"):
        grpc_processes(Settings(data_dir=tmp_path, grpc_processes=2))

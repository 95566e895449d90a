"""The gRPC server's connection options: connections aged out (GOAWAY) after LATFARM_GRPC_MAX_CONNECTION_AGE_S."""

from __future__ import annotations

from latfarm.services.core.config import Settings
from latfarm.services.rpc.server import CONNECTION_AGE_GRACE_MS, OPTIONS, server_options
from latfarm.services.rpc.servicer import MAX_WAIT_S


def test_connections_are_aged_out_after_the_setting_with_a_grace_past_the_longest_long_poll():
    default = dict(server_options(Settings()))
    assert default["grpc.max_connection_age_ms"] == 300_000
    assert default["grpc.max_connection_age_grace_ms"] == CONNECTION_AGE_GRACE_MS > MAX_WAIT_S * 1000
    assert dict(server_options(Settings(grpc_max_connection_age_s=2.5)))["grpc.max_connection_age_ms"] == 2500
    assert server_options(Settings(grpc_max_connection_age_s=0)) == OPTIONS  # never

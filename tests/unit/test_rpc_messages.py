"""The servicer's wire mappings: what a reported result and a request's sizes become, against protobuf's own."""

from __future__ import annotations

import math

import pytest
from google.protobuf import json_format

from latfarm.proto.v1 import agent_pb2
from latfarm.proto.v1.limits import oversized
from latfarm.services.rpc.servicer import reported_result


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"rounds": 3, "runs_per_round": 20, "statistic": "min", "threads": 2, "timeout_s": 2.5},
        {"warmup_runs": 0},  # optional: sent as 0, kept
        {"timeout_s": math.nan},
        {"timeout_s": math.inf},
        {"timeout_s": -math.inf},
    ],
)
def test_a_results_settings_are_what_json_format_makes_of_them(settings):
    result = agent_pb2.Result(job_id="j", ok=True, settings=agent_pb2.MeasureSettings(**settings))
    expected = json_format.MessageToDict(result.settings, preserving_proto_field_name=True)
    assert reported_result(result).settings == expected


def test_oversized_names_the_first_field_over_its_limit_at_any_depth():
    ok = agent_pb2.Result(job_id="a" * 32, ok=True, affinity=list(range(64)))
    ok.stats.round_medians_ms.extend([1.0] * 1000)
    assert oversized(agent_pb2.ReportRequest(results=[ok] * 16)) is None
    long_message = agent_pb2.Result(job_id="b", error_message="x" * 2001)
    assert oversized(agent_pb2.ReportRequest(results=[ok, long_message])) == (
        "results[1].error_message",
        "at most 2000 characters, got 2001",
    )
    many = agent_pb2.Result(job_id="c")
    many.stats.round_medians_ms.extend([1.0] * 1001)
    assert oversized(agent_pb2.ReportRequest(results=[many])) == (
        "results[0].stats.round_medians_ms",
        "at most 1000 items, got 1001",
    )
    long_id = agent_pb2.HeartbeatRequest(job_ids=["x" * 257])
    assert oversized(long_id) == ("job_ids[0]", "at most 256 characters, got 257")

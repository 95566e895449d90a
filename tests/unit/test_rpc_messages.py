"""The servicer's wire mappings: what a reported result and a request's sizes become, against protobuf's own."""

from __future__ import annotations

import math

import pytest
from google.protobuf import json_format

from latfarm.proto.v1 import agent_pb2, limits
from latfarm.proto.v1.limits import oversized
from latfarm.services.core.clock import utcnow
from latfarm.services.domain import queue
from latfarm.services.domain.conditions import Conditions
from latfarm.services.rpc.servicer import _job_messages, reported_result


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


@pytest.mark.parametrize("name", sorted(agent_pb2.DESCRIPTOR.message_types_by_name))
def test_a_field_just_over_its_limit_is_found_in_an_otherwise_empty_message(name):
    """The check passes messages below a size without a look at their fields: no field over its limit fits there."""
    for field in getattr(agent_pb2, name).DESCRIPTOR.fields:
        message = getattr(agent_pb2, name)()
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            getattr(message, field.name).update({str(n): "" for n in range(limits.MAX_MAP + 1)})
        elif field.is_repeated and field.type != field.TYPE_MESSAGE:
            item = "" if field.type == field.TYPE_STRING else 0
            getattr(message, field.name).extend([item] * (limits.LISTS.get(field.name, limits.MAX_LIST) + 1))
        elif field.type == field.TYPE_STRING:
            setattr(message, field.name, "é" * (limits.string_limit(field.name) + 1))
        else:
            continue
        assert oversized(message) is not None, f"{name}.{field.name}"


def test_leased_jobs_carry_their_own_batchs_conditions():
    """Jobs of two batches in one lease, interleaved: each message has its batch's conditions and input shape."""
    single, four = Conditions(), Conditions(batch_size=4, precision="fp16")
    batches = {"a": single, "b": four}
    jobs = [
        queue.Leased(
            queue.BatchSettings(batches[batch], {}), f"j{n}", batch, "nb201", "arch", "onnx", "0" * 64, 10, 1, utcnow()
        )
        for n, batch in enumerate("aba")
    ]
    messages = _job_messages(jobs)
    for job, message in zip(jobs, messages, strict=True):
        expected = batches[job.batch_id]
        assert json_format.MessageToDict(message.conditions, preserving_proto_field_name=True) == expected.to_dict()
        assert list(message.input_shape) == list(expected.input_shape)
    assert list(messages[1].input_shape)[0] == 4 and list(messages[0].input_shape)[0] == 1

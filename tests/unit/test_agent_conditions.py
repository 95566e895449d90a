"""The agent measures a job's conditions or refuses clearly, on real onnxruntime sessions: fp16 and int8 models,
the conditions' batch size, ``unsupported`` for a missing kernel, and jobs without conditions as before."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import onnx

from latfarm.agents.backends.onnx import OnnxBackend
from latfarm.agents.cache import ArtifactCache
from latfarm.agents.conditions import JobConditions
from latfarm.agents.loop import AgentLoop
from latfarm.agents.measurement import LOAD, UNSUPPORTED, WRONG_OUTPUT, BatchMeasurer, MeasureSettings, ModelTask
from latfarm.agents.options import AgentOptions
from latfarm.proto.v1 import agent_pb2
from tests.agent_models import matmul_chain, no_cpu_kernel, sha256_of, to_fp16, to_int8

QUICK = MeasureSettings(warmup_runs=1, runs_per_round=5, rounds=2, busy_warmup_s=0.05, spread_threshold=10.0)


def conditions(batch_size: int = 1, precision: str = "fp32") -> JobConditions:
    return JobConditions("nb201", 32, 10, batch_size, precision, "reference")


def measure(*tasks: ModelTask) -> dict:
    return {r.key: r for r in BatchMeasurer(OnnxBackend(), QUICK).measure(list(tasks))}


def test_fp16_model_measures_with_float16_input(tmp_path):
    # onnxruntime's CPU provider runs a float16 model: it has float16 kernels for some ops (MatMul) and computes the
    # others through casts to float32 that it inserts itself; so here an fp16 job measures rather than failing.
    fp16 = to_fp16(matmul_chain(tmp_path / "m.onnx", rows=4), tmp_path / "m16.onnx")
    model = OnnxBackend().load(fp16, 1, [], batch_size=4)
    assert model.feed["x"].dtype == np.float16 and model.feed["x"].shape == (4, 64)
    model.close()
    [result] = measure(ModelTask("fp16", fp16, [4, 64], conditions(4, "fp16"))).values()
    assert result.ok and result.error_class is None and result.stats.latency_ms > 0


def test_int8_qdq_model_measures_with_float32_input(tmp_path):
    int8 = to_int8(matmul_chain(tmp_path / "m.onnx"), tmp_path / "m8.onnx")
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    model = OnnxBackend().load(int8, 1, [1, 64], batch_size=1)
    assert model.feed["x"].dtype == np.float32
    model.close()
    [result] = measure(ModelTask("int8", int8, [1, 64], conditions(1, "int8"))).values()
    assert result.ok and result.stats.latency_ms > 0


def test_a_missing_kernel_is_unsupported_for_reduced_precision_and_a_load_failure_otherwise(tmp_path):
    model = no_cpu_kernel(tmp_path / "acos.onnx")
    results = measure(
        ModelTask("fp16", model, [1, 4], conditions(1, "fp16")),
        ModelTask("int8", model, [1, 4], conditions(1, "int8")),
        ModelTask("fp32", model, [1, 4], conditions(1, "fp32")),
        ModelTask("none", model, [1, 4]),
    )
    for key in ("fp16", "int8"):
        assert (results[key].ok, results[key].error_class) == (False, UNSUPPORTED)
        assert f"onnxruntime here cannot run this {key} model" in results[key].error_message
        assert "Could not find an implementation" in results[key].error_message
    assert results["fp32"].error_class == LOAD and results["none"].error_class == LOAD


def test_batch_comes_from_the_conditions(tmp_path):
    static4 = matmul_chain(tmp_path / "b4.onnx", rows=4)
    dynamic = matmul_chain(tmp_path / "dyn.onnx", rows="n")
    static1 = matmul_chain(tmp_path / "b1.onnx", rows=1)
    for path in (static4, dynamic):  # the job's batch, whether the model fixes it or leaves it symbolic
        model = OnnxBackend().load(path, 1, [], batch_size=4)
        assert list(model.feed["x"].shape) == [4, 64] and model.batch == 4
        model.close()
    results = measure(
        ModelTask("static4", static4, [4, 64], conditions(4)),
        ModelTask("dynamic", dynamic, [], conditions(4)),
        ModelTask("static1", static1, [4, 64], conditions(4)),  # an artifact that is not the job's network
    )
    assert results["static4"].ok and results["dynamic"].ok
    assert results["static1"].error_class == WRONG_OUTPUT
    assert "input batch is 1, the job's conditions say batch 4" in results["static1"].error_message


class FakeConnection:
    """Serves artifacts from files and records reports."""

    def __init__(self, files):
        self.files, self.reports = {sha256_of(f): f for f in files}, []

    def fetch(self, sha256):
        return [self.files[sha256].read_bytes()]

    def report(self, request):
        self.reports.append(request)
        return SimpleNamespace(acks=[])


def job(job_id: str, path, shape: list[int], batch_size: int | None = None) -> agent_pb2.Job:
    message = agent_pb2.Job(job_id=job_id, format="onnx", artifact_sha256=sha256_of(path), input_shape=shape)
    if batch_size is not None:
        message.conditions.CopyFrom(
            agent_pb2.Conditions(
                space="nb201", resolution=32, classes=10, batch_size=batch_size, precision="fp32", graph="reference"
            )
        )
    return message


def test_the_loop_reports_the_conditions_it_was_asked_and_jobs_without_them_as_before(tmp_path):
    one, four = matmul_chain(tmp_path / "b1.onnx"), matmul_chain(tmp_path / "b4.onnx", rows=4)
    conn = FakeConnection([one, four])
    options = AgentOptions(server="unused", measure=QUICK)
    loop = AgentLoop(
        conn, {"onnx": OnnxBackend()}, ArtifactCache(tmp_path / "cache", 10**8), options, threading.Event(), 1
    )
    loop.process([job("old", one, [1, 64]), job("b4", four, [4, 64], batch_size=4)])
    assert len(conn.reports) == 2  # one report per set of conditions: each provenance names its own
    by_job = {report.results[0].job_id: report for report in conn.reports}
    assert all(report.results[0].ok for report in conn.reports)
    assert by_job["b4"].provenance.extra["conditions"] == "nb201/32px/10cls/b4/fp32/reference"
    assert "conditions" not in by_job["old"].provenance.extra  # an older server's job: reported as before
    assert JobConditions.of(job("old", one, [1, 64])) is None

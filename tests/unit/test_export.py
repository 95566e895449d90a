"""ONNX/TFLite export: numerics against torch, graph variants, batch size and precision, byte determinism, and the
content-addressed artifact store."""

from __future__ import annotations

import hashlib
import os
import random
import re
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import typer

from latfarm.predictor import nb201
from latfarm.predictor.network import build
from latfarm.services.cli.data import export_model
from latfarm.services.cli.model_files import export_cli
from latfarm.services.core.errors import Unsupported
from latfarm.services.core.extras import install_command
from latfarm.services.domain.artifacts import ArtifactNotReproducible, ArtifactStore
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.network_export import ExportSettings, ExportUnavailable, export_onnx, export_tflite
from latfarm.services.store.crud import ensure_archs
from latfarm.services.store.models import Arch, Artifact
from tests.conftest import needs_extra

ALL_NONE_NODE_2 = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|"
DISCONNECTED = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|none~2|"


def random_archs(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [nb201.to_string([rng.randrange(5) for _ in nb201.EDGES]) for _ in range(n)]


def torch_logits(arch: str, settings: ExportSettings, x: np.ndarray) -> np.ndarray:
    net = build(arch, channels=settings.channels, classes=settings.classes)
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("arch", [*random_archs(3), ALL_NONE_NODE_2, DISCONNECTED])
def test_onnx_matches_torch(arch):
    settings = ExportSettings()
    session = ort.InferenceSession(export_onnx(arch, settings), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    (got,) = session.run(["logits"], {"input": x})
    np.testing.assert_allclose(got, torch_logits(arch, settings, x), atol=1e-4, rtol=1e-4)


def test_onnx_settings_shape_and_metadata():
    settings = ExportSettings(resolution=16, classes=120, batch_size=2)
    model = onnx.load_from_string(export_onnx(ALL_NONE_NODE_2, settings))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 16, 16]
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [2, 120]
    assert model.opset_import[0].version == 17
    assert model.producer_name == "latfarm" and model.producer_version == ""
    assert {p.key: p.value for p in model.metadata_props}["latfarm.arch"] == ALL_NONE_NODE_2


def test_dead_non_none_ops_are_exported():
    # node 1's conv reaches only none edges; the disconnected cell's conv reads an all-zero node: both stay
    for arch in ["|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|", DISCONNECTED]:
        model = onnx.load_from_string(export_onnx(arch, ExportSettings(graph="pruned")))
        convs = sum(n.op_type == "Conv" for n in model.graph.node)
        assert convs == 7 + 15  # stem 1 + 2 reduction blocks x 3, plus one conv per cell


def run_onnx(data: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


def op_counts(data: bytes) -> dict[str, int]:
    nodes = onnx.load_from_string(data).graph.node
    return {op: sum(n.op_type == op for n in nodes) for op in {n.op_type for n in nodes}}


@pytest.mark.parametrize(
    "arch", [ALL_NONE_NODE_2, DISCONNECTED, "|avg_pool_3x3~0|+|none~0|none~1|+|none~0|nor_conv_1x1~1|none~2|"]
)
def test_reference_export_keeps_zero_ops_pruned_drops_them_same_outputs(arch):
    reference, pruned = export_onnx(arch), export_onnx(arch, ExportSettings(graph="pruned"))
    ref_ops, pruned_ops = op_counts(reference), op_counts(pruned)
    # every none edge is a Mul by 0 (the exporter merges identical ones reading the same node): at least one
    # per cell per distinct source node of a none edge; the pruned graph keeps at most the anchoring ones
    sources = {src for op, (src, _) in zip(nb201.parse(arch), nb201.EDGES, strict=True) if op == 0}
    assert ref_ops["Mul"] >= 15 * len(sources)
    assert ref_ops.get("Mul", 0) > pruned_ops.get("Mul", 0)
    assert sum(ref_ops.values()) > sum(pruned_ops.values())
    assert ref_ops["Conv"] == pruned_ops["Conv"]
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    reference2, pruned2 = (export_onnx(arch, ExportSettings(batch_size=2, graph=g)) for g in ("reference", "pruned"))
    np.testing.assert_allclose(run_onnx(reference2, x), run_onnx(pruned2, x), atol=1e-4, rtol=1e-4)


def test_batch_size_export_input_shape():
    model = onnx.load_from_string(
        export_onnx(ALL_NONE_NODE_2, ExportSettings.from_conditions(Conditions(batch_size=4)))
    )
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [4, 3, 32, 32]
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [4, 10]


def test_fp16_export_has_float16_weights_and_float32_io():
    arch = random_archs(1, seed=21)[0]
    data = export_onnx(arch, ExportSettings(precision="fp16"))
    model = onnx.load_from_string(data)
    assert {i.data_type for i in model.graph.initializer if i.dims} == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(data, x), torch_logits(arch, ExportSettings(), x), atol=0.05, rtol=0.05)
    assert data == export_onnx(arch, ExportSettings(precision="fp16"))


def test_int8_export_is_qdq_runs_on_cpu_and_is_close_to_fp32():
    arch = random_archs(1, seed=23)[0]
    data = export_onnx(arch, ExportSettings(precision="int8"))
    ops = op_counts(data)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    got, want = run_onnx(data, x), torch_logits(arch, ExportSettings(), x)
    assert np.abs(got - want).max() < 0.2 * np.abs(want).max() + 0.05  # int8: close-ish, not exact
    assert data == export_onnx(arch, ExportSettings(precision="int8"))  # seeded calibration: same bytes


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tflite_refuses_reduced_precision(precision):
    with pytest.raises(Unsupported, match="fp32 only"):
        export_tflite(ALL_NONE_NODE_2, ExportSettings(precision=precision))


def test_settings_from_conditions_and_legacy_rows():
    conditions = Conditions(resolution=16, classes=120, batch_size=8, precision="fp16", graph="pruned")
    settings = ExportSettings.from_conditions(conditions)
    assert (settings.resolution, settings.classes, settings.batch_size) == (16, 120, 8)
    assert (settings.precision, settings.graph) == ("fp16", "pruned")
    assert ExportSettings.from_dict(settings.to_dict()) == settings
    legacy = {"resolution": 32, "channels": 16, "classes": 10, "opset": 17, "batch_size": 1}  # recorded before #13
    assert ExportSettings.from_dict(legacy) == ExportSettings(graph="pruned")
    with pytest.raises(ValueError, match="precision"):
        ExportSettings(precision="int4")


def test_export_is_byte_deterministic():
    arch = random_archs(1, seed=3)[0]
    assert hashlib.sha256(export_onnx(arch)).digest() == hashlib.sha256(export_onnx(nb201.parse(arch))).digest()
    assert export_onnx(arch) != export_onnx(arch, ExportSettings(resolution=16, classes=120))


def test_tflite_without_extra_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # an import of it raises ImportError, as when absent
    with pytest.raises(ExportUnavailable, match=f"'tflite' extra .*: {re.escape(install_command('tflite'))}$"):
        export_tflite(ALL_NONE_NODE_2)


def test_tflite_matches_torch():
    needs_extra("litert_torch", "tflite")
    from ai_edge_litert.interpreter import Interpreter

    settings = ExportSettings()
    for arch in [random_archs(1, seed=11)[0], DISCONNECTED]:
        interpreter = Interpreter(model_content=export_tflite(arch, settings))
        interpreter.allocate_tensors()
        x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        np.testing.assert_allclose(got, torch_logits(arch, settings, x), atol=1e-4, rtol=1e-4)


def test_store_export_file_is_cached(tmp_path):
    arch = random_archs(1, seed=5)[0]
    sha, path = ArtifactStore(tmp_path).export_file(arch, "onnx", Conditions())
    assert path == tmp_path / sha[:2] / f"{sha}.onnx"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    stamp = path.stat().st_mtime_ns
    again = ArtifactStore(tmp_path)  # a new process: the on-disk index answers
    assert again.export_file(arch, "onnx", Conditions()) == (sha, path)
    assert path.stat().st_mtime_ns == stamp
    others = [
        Conditions(classes=100),
        Conditions(batch_size=4),
        Conditions(graph="pruned"),
        Conditions(precision="fp16"),
    ]
    shas = {again.export_file(arch, "onnx", conditions)[0] for conditions in others}
    assert len(shas | {sha}) == 1 + len(others)  # different conditions, different files
    with pytest.raises(ValueError, match="unknown model format"):
        again.export_file(arch, "pt", Conditions())


def test_store_ensure_and_open(sessions, tmp_path):
    arch_str = random_archs(1, seed=9)[0]
    store = ArtifactStore(tmp_path / "a")
    with sessions() as session, session.begin():
        arch = session.get(Arch, ensure_archs(session, [arch_str])[arch_str])
        first = store.ensure(session, arch, "onnx", Conditions())
        second = ArtifactStore(tmp_path / "a").ensure(session, arch, "onnx", Conditions())
        assert first.sha256 == second.sha256
        assert first.size_bytes == store.path(first.sha256, "onnx").stat().st_size
        assert first.settings == ExportSettings().to_dict()
        batch4 = store.ensure(session, arch, "onnx", Conditions(batch_size=4, graph="pruned"))
        assert batch4.sha256 != first.sha256
        assert (batch4.settings["batch_size"], batch4.settings["graph"]) == (4, "pruned")
    with sessions() as session:
        assert session.query(Artifact).count() == 2
        # another replica, with an empty disk, re-exports and verifies the file
        replica = ArtifactStore(tmp_path / "b")
        with replica.open(session, first.sha256) as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == first.sha256
        assert replica.open(session, "0" * 64) is None


def test_open_refuses_a_mismatching_reexport(sessions, tmp_path):
    arch_str = random_archs(1, seed=13)[0]
    with sessions() as session, session.begin():
        arch = session.get(Arch, ensure_archs(session, [arch_str])[arch_str])
        session.add(Artifact(sha256="f" * 64, arch_id=arch.id, format="onnx", settings={}, size_bytes=1))
    with sessions() as session, pytest.raises(ArtifactNotReproducible, match="re-exporting"):
        ArtifactStore(tmp_path).open(session, "f" * 64)


def test_export_cli_accepts_indices_and_strings(tmp_path, capsys):
    arch = nb201.to_string(nb201.from_official_index(0))
    export_cli(["0", arch], fmt="onnx", out=tmp_path, conditions=Conditions())
    lines = [line.split() for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 2 and lines[0][0] == lines[1][0]
    assert lines[0][2] == arch
    with pytest.raises(typer.BadParameter, match="nb201: reference position 99999 is outside"):
        export_cli(["99999"], fmt="onnx", out=tmp_path, conditions=Conditions())
    options = {
        "space": "nb201",
        "resolution": 32,
        "classes": 10,
        "batch_size": 1,
        "precision": "fp32",
        "graph": "reference",
    }
    # the command prints one line and exits
    unknown = "latfarm export model: unknown model format 'xml'; expected one of onnx, tflite"
    with pytest.raises(SystemExit, match=unknown):
        export_model(["0"], fmt="xml", out=tmp_path, **options)
    with pytest.raises(typer.BadParameter, match=r"^must be between 1 and 1024, got 0$") as bad:
        export_model(["0"], fmt="onnx", out=tmp_path, **{**options, "batch_size": 0})  # a usage error (exit 2)
    assert bad.value.param_hint == "'--batch-size'"
    capsys.readouterr()
    export_model(["0"], fmt="onnx", out=tmp_path, **{**options, "batch_size": 2, "graph": "pruned"})
    (line,) = capsys.readouterr().out.strip().splitlines()
    model = onnx.load(line.split()[1])
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [2, 3, 32, 32]


def test_concurrent_requests_share_one_export(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    store = ArtifactStore(tmp_path)
    arch = random_archs(1, seed=17)[0]
    with ThreadPoolExecutor(4) as pool:
        results = set(pool.map(lambda _: store.export_file(arch, "onnx", Conditions()), range(4)))
    assert len(results) == 1
    assert len(list(tmp_path.glob("*/*.onnx"))) == 1
    assert not list(tmp_path.rglob("*.tmp"))  # no temporary file left


def test_exported_files_get_the_permissions_of_a_plain_open(tmp_path):
    # written through a temporary file and renamed: they must get what the umask allows, not tempfile's 0o600
    umask = os.umask(0o022)
    os.umask(umask)
    _, path = ArtifactStore(tmp_path).export_file(random_archs(1, seed=3)[0], "onnx", Conditions())
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    (index,) = (tmp_path / "index").iterdir()
    assert index.stat().st_mode & 0o777 == 0o666 & ~umask

"""ONNX/TFLite export: numerics against torch, byte determinism, and the content-addressed artifact store."""

from __future__ import annotations

import hashlib
import importlib.util
import random

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from latfarm.predictor import nb201
from latfarm.predictor.network import build
from latfarm.services.cli.data import export_model
from latfarm.services.cli.model_files import export_cli
from latfarm.services.core.errors import InvalidArgument
from latfarm.services.domain.artifacts import ArtifactNotReproducible, ArtifactStore
from latfarm.services.domain.network_export import ExportSettings, ExportUnavailable, export_onnx, export_tflite
from latfarm.services.store.crud import ensure_archs
from latfarm.services.store.models import Arch, Artifact

ALL_NONE_NODE_2 = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|"
DISCONNECTED = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|none~2|"
HAS_LITERT_TORCH = importlib.util.find_spec("litert_torch") is not None


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
        model = onnx.load_from_string(export_onnx(arch))
        convs = sum(n.op_type == "Conv" for n in model.graph.node)
        assert convs == 7 + 15  # stem 1 + 2 reduction blocks x 3, plus one conv per cell


def test_export_is_byte_deterministic():
    arch = random_archs(1, seed=3)[0]
    assert hashlib.sha256(export_onnx(arch)).digest() == hashlib.sha256(export_onnx(nb201.parse(arch))).digest()
    assert export_onnx(arch) != export_onnx(arch, ExportSettings(resolution=16))


@pytest.mark.skipif(HAS_LITERT_TORCH, reason="litert-torch is installed")
def test_tflite_without_extra_names_the_extra():
    with pytest.raises(ExportUnavailable, match=r"latfarm\[tflite\]"):
        export_tflite(ALL_NONE_NODE_2)


@pytest.mark.skipif(not HAS_LITERT_TORCH, reason="litert-torch (the 'tflite' extra) is not installed")
def test_tflite_matches_torch():
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
    sha, path = ArtifactStore(tmp_path).export_file(arch, "onnx")
    assert path == tmp_path / sha[:2] / f"{sha}.onnx"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    stamp = path.stat().st_mtime_ns
    again = ArtifactStore(tmp_path)  # a new process: the on-disk index answers
    assert again.export_file(arch, "onnx") == (sha, path)
    assert path.stat().st_mtime_ns == stamp
    other_sha, _ = ArtifactStore(tmp_path, ExportSettings(classes=120)).export_file(arch, "onnx")
    assert other_sha != sha
    with pytest.raises(ValueError, match="unknown model format"):
        again.export_file(arch, "pt")


def test_store_ensure_and_open(sessions, tmp_path):
    arch_str = random_archs(1, seed=9)[0]
    store = ArtifactStore(tmp_path / "a")
    with sessions() as session, session.begin():
        arch = session.get(Arch, ensure_archs(session, [arch_str])[arch_str])
        first = store.ensure(session, arch, "onnx")
        second = ArtifactStore(tmp_path / "a").ensure(session, arch, "onnx")
        assert first.sha256 == second.sha256
        assert first.size_bytes == store.path(first.sha256, "onnx").stat().st_size
        assert first.settings == ExportSettings().to_dict()
    with sessions() as session:
        assert session.query(Artifact).count() == 1
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
    export_cli(["0", arch], fmt="onnx", out=tmp_path, resolution=32, classes=10)
    lines = [line.split() for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 2 and lines[0][0] == lines[1][0]
    assert lines[0][2] == arch
    with pytest.raises(InvalidArgument, match="outside"):
        export_cli(["99999"], fmt="onnx", out=tmp_path, resolution=32, classes=10)
    with pytest.raises(SystemExit, match="error: unknown model format 'xml'"):  # the command prints one line, exits
        export_model(["0"], fmt="xml", out=tmp_path, resolution=32, classes=10)


def test_concurrent_requests_share_one_export(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    store = ArtifactStore(tmp_path)
    arch = random_archs(1, seed=17)[0]
    with ThreadPoolExecutor(4) as pool:
        results = set(pool.map(lambda _: store.export_file(arch, "onnx"), range(4)))
    assert len(results) == 1
    assert len(list(tmp_path.glob("*/*.onnx"))) == 1
    assert not list(tmp_path.glob("*/.tmp-*"))

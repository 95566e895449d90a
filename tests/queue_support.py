"""Queue helpers shared by the unit and integration tests: a tiny real artifact store, devices, agents, batches,
leases."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sqlalchemy.exc import IntegrityError

from latfarm.predictor import nb201
from latfarm.services.core.security import hash_secret, new_secret
from latfarm.services.domain import batches, job_artifacts, queue
from latfarm.services.domain.artifacts import ArtifactStore
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.network_export import ExportSettings, export_onnx
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Agent, Arch, Artifact, Device

ARCHS = [nb201.to_string(ops) for ops in list(nb201.enumerate_archs())[:12]]
INPUT_SHAPE = [1, 3, 32, 32]
DEFAULT = Conditions()  # a new device's conditions: batch 1, fp32, reference graph
SLOW_S = 120.0  # how long a ``QuickTfliteStore`` conversion of a slow arch takes


EXPORT_LOG = "exports.log"  # one line per export: arch, format, process id


def log_export(root: Path, arch: str, fmt: str) -> None:
    """Note an export in ``root``'s log (appends are whole lines: processes may share it)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / EXPORT_LOG).open("a") as log:
        log.write(f"{arch}\t{fmt}\t{os.getpid()}\n")


def logged_exports(root: Path) -> list[tuple[str, str, int]]:
    """The exports noted in ``root``'s log, in this process or another: (arch, format, process id)."""
    path = root / EXPORT_LOG
    lines = path.read_text().splitlines() if path.exists() else []
    return [(arch, fmt, int(pid)) for arch, fmt, pid in (line.split("\t") for line in lines)]


class TinyArtifactStore:
    """A real, small artifact store for tests: an ONNX ``y = x + c`` graph per arch (in any format), content-addressed
    on disk. Picklable, as the export worker's conversion processes need; it never requests a missing file."""

    def __init__(self, root: Path, extra_floats: int = 0, fail_archs: frozenset[str] = frozenset()) -> None:
        self.root = root
        self.extra_floats = extra_floats  # padding initializer, to make big artifacts
        self.fail_archs = fail_archs
        root.mkdir(parents=True, exist_ok=True)

    def export_file(self, arch: str, fmt: str, conditions: Conditions = DEFAULT) -> tuple[str, Path]:
        if arch in self.fail_archs:
            raise RuntimeError(f"cannot export {arch}")
        log_export(self.root, arch, fmt)
        data = self.model_bytes(nb201.official_index(nb201.parse(arch)), fmt, list(conditions.input_shape))
        sha = hashlib.sha256(data).hexdigest()
        (self.root / sha).write_bytes(data)
        return sha, self.root / sha

    def exports(self) -> list[tuple[str, str, int]]:
        """Every ``export_file`` call so far (``logged_exports``)."""
        return logged_exports(self.root)

    def requested(self) -> list[str]:
        return []

    def restore_file(self, sha256: str, arch: str, fmt: str, settings: dict) -> None:
        raise NotImplementedError("the tiny store never requests a file")

    def restored(self, sha256: str, error: Exception | None) -> None:
        raise NotImplementedError("the tiny store never requests a file")

    def ensure(self, session, arch: Arch, fmt: str, conditions: Conditions = DEFAULT) -> Artifact:
        sha, path = self.export_file(arch.arch, fmt, conditions)
        data = path.read_bytes()
        artifact = session.get(Artifact, sha)
        if artifact is not None:
            return artifact
        artifact = Artifact(
            sha256=sha,
            arch_id=arch.id,
            format=fmt,
            settings={"input_shape": list(conditions.input_shape), **conditions.to_dict()},
            size_bytes=len(data),
        )
        try:
            with session.begin_nested():  # another replica may record it at the same time
                session.add(artifact)
        except IntegrityError:
            return session.get(Artifact, sha, populate_existing=True)
        return artifact

    def open(self, session, sha256: str):
        path = self.root / sha256
        if session.get(Artifact, sha256) is None or not path.exists():
            return None
        return path.open("rb")

    def model_bytes(self, seed: int, fmt: str, shape: list[int] = INPUT_SHAPE) -> bytes:
        """The serialized ONNX ``y = x + seed`` model on ``shape`` (NCHW; ``fmt`` only names the graph)."""
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
        c = numpy_helper.from_array(np.full(shape, float(seed), dtype=np.float32), "c")
        inits = [c]
        if self.extra_floats:
            pad = np.random.default_rng(seed).standard_normal(self.extra_floats).astype(np.float32)
            inits.append(numpy_helper.from_array(pad, "pad"))
        graph = helper.make_graph([helper.make_node("Add", ["x", "c"], ["y"])], f"tiny-{fmt}", [x], [y], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.checker.check_model(model)
        return model.SerializeToString()


class QuickTfliteStore(ArtifactStore):
    """The real artifact store, whose TFLite files (a format outside ``INLINE_FORMATS``) are the arch's ONNX export
    (torch, a fraction of a second; agents measure them with onnxruntime): the slow-format path without
    litert-torch. Every conversion is logged with its process id (``logged_exports``); one of an arch named in
    ``root/crash_archs`` kills its process, one named in ``root/slow_archs`` takes ``SLOW_S``."""

    def convert(self, arch: str, fmt: str, settings: ExportSettings) -> bytes:
        log_export(self.root, arch, fmt)
        if fmt == "tflite" and arch in self._named("crash_archs"):
            os.kill(os.getpid(), signal.SIGKILL)
        if fmt == "tflite" and arch in self._named("slow_archs"):
            time.sleep(SLOW_S)
        return export_onnx(arch, settings) if fmt == "tflite" else super().convert(arch, fmt, settings)

    def _named(self, name: str) -> list[str]:
        path = self.root / name
        return path.read_text().split() if path.exists() else []


def make_device(sessions, name: str = "dev-a", runtime: str = "onnxruntime") -> int:
    with transaction(sessions) as s:
        device = Device(name=name, runtime=runtime)
        s.add(device)
        s.flush()
        return device.id


def make_agent(sessions, device_id: int) -> str:
    with transaction(sessions) as s:
        agent = Agent(device_id=device_id, credential_hash=hash_secret(new_secret("lf_agent")))
        s.add(agent)
        s.flush()
        return agent.id


def submit(sessions, device_id: int, archs=ARCHS, fmt: str | None = None, conditions: Conditions = DEFAULT) -> str:
    with transaction(sessions) as s:
        device = s.get(Device, device_id)
        return batches.submit_batch(s, device, archs, fmt=fmt, requested_by="tester", conditions=conditions).id


def lease(sessions, agent_id, store, *, max_jobs=4, formats=("onnx",), lease_seconds=30, now=None, max_attempts=3):
    with transaction(sessions) as s:
        agent = s.get(Agent, agent_id)
        job_artifacts.resolve_artifacts(s, agent.device_id, formats, max_jobs, store, now)
        jobs = queue.lease(
            s,
            agent,
            max_jobs=max_jobs,
            formats=formats,
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            now=now,
        )
        return [(j.job_id, j.arch, j.artifact_sha256, j.attempts) for j in jobs]

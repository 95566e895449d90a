"""The export worker on SQLite and PostgreSQL: it exports and records the models of queued jobs, once each, keeps
going past a failing export, stops promptly, and leaves ``LeaseJobs`` nothing to export."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter

from sqlalchemy import select, text, update

from latfarm.services.domain.artifacts import ArtifactStore
from latfarm.services.infra.wakeups import LocalNotifier
from latfarm.services.store.db import make_read_sessionmaker, transaction
from latfarm.services.store.models import Arch, Artifact, Job, JobState
from latfarm.services.workers.export_worker import ExportWorker, conversion_processes
from tests.queue_support import ARCHS, DEFAULT, TinyArtifactStore, make_device, submit


class CountingStore(TinyArtifactStore):
    """Counts ``export_file`` calls per (arch, format), in any process, since ``reset_calls``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._since = 0

    @property
    def calls(self) -> Counter[tuple[str, str]]:
        return Counter((arch, fmt) for arch, fmt, _ in self.exports()[self._since :])

    def reset_calls(self) -> None:
        self._since = len(self.exports())


def worker(sessions, store, notifier: LocalNotifier | None = None, **kwargs) -> ExportWorker:
    read_sessions = make_read_sessionmaker(sessions.kw["bind"])
    return ExportWorker(sessions, read_sessions, store, notifier or LocalNotifier(), **kwargs)


def recorded(sessions) -> Counter[tuple[str, str]]:
    with sessions() as s:
        rows = s.execute(select(Arch.arch, Artifact.format).join(Arch, Arch.id == Artifact.arch_id)).all()
    return Counter((arch, fmt) for arch, fmt in rows)


def test_worker_exports_queued_jobs_once(sessions, tmp_path):
    dev_a, dev_b = make_device(sessions), make_device(sessions, "dev-b")
    submit(sessions, dev_a, ARCHS[:3])
    submit(sessions, dev_b, ARCHS[2:5])  # ARCHS[2] is queued on both devices
    submit(sessions, make_device(sessions, "dev-lite", runtime="litert"), ARCHS[:1])  # its runtime's: tflite
    submit(sessions, dev_b, ARCHS[5:6])
    with transaction(sessions) as s:  # not queued any more: nothing to export
        s.execute(
            update(Job)
            .where(Job.arch_id == s.scalar(select(Arch.id).where(Arch.arch == ARCHS[5])))
            .values(state=JobState.failed)
        )
    store = CountingStore(tmp_path / "artifacts")
    export_worker = worker(sessions, store, chunk=2)  # several chunks per sweep

    assert export_worker.run_once() == 6
    wanted = {(arch, "onnx") for arch in ARCHS[:5]} | {(ARCHS[0], "tflite")}
    assert recorded(sessions) == Counter(wanted)
    assert set(store.calls) == wanted
    store.reset_calls()
    assert export_worker.run_once() == 0
    assert not store.calls


def test_a_sweep_that_exported_refreshes_the_statistics_the_lease_plans_by(sessions, tmp_path):
    """On PostgreSQL the jobs' statistics count the exported jobs after a sweep (a lease plans by them)."""
    dev = make_device(sessions)
    submit(sessions, dev, ARCHS)
    with sessions() as s:
        postgres = s.get_bind().dialect.name == "postgresql"
        if postgres:
            s.execute(text("ANALYZE jobs"))  # statistics from before the exports
            s.commit()

    def exported_share() -> float | None:
        with sessions() as s:
            query = "SELECT 1 - null_frac FROM pg_stats WHERE tablename = 'jobs' AND attname = 'artifact_sha256'"
            return s.scalar(text(query)) if postgres else None

    assert exported_share() in (0.0, None)
    assert worker(sessions, TinyArtifactStore(tmp_path / "artifacts")).tick()
    assert exported_share() == (1.0 if postgres else None)


def test_exports_wake_the_agents_of_the_devices_they_unblock(sessions, tmp_path):
    """A job becomes leasable when its model is exported: agents long-polling on its device must hear of it, or a
    second agent of a device sleeps through a batch that another agent's lease prepared."""
    dev_a, dev_b, idle = make_device(sessions), make_device(sessions, "dev-b"), make_device(sessions, "dev-idle")
    submit(sessions, dev_a, ARCHS[:2])
    submit(sessions, dev_b, ARCHS[1:2])
    notifier = LocalNotifier()
    before = {device: notifier.version(device) for device in (dev_a, dev_b, idle)}
    woke = threading.Event()
    waiter = threading.Thread(target=lambda: notifier.wait(dev_b, 30, after=before[dev_b]) and woke.set())
    waiter.start()
    assert worker(sessions, CountingStore(tmp_path / "artifacts"), notifier).run_once() == 2
    waiter.join(timeout=30)
    assert woke.is_set()
    assert notifier.version(dev_a) > before[dev_a] and notifier.version(dev_b) > before[dev_b]
    assert notifier.version(idle) == before[idle]  # no jobs of its own were unblocked


def test_failing_export_is_logged_and_skipped(sessions, tmp_path, caplog):
    dev = make_device(sessions)
    submit(sessions, dev, ARCHS[:4])
    store = CountingStore(tmp_path / "artifacts", fail_archs=frozenset({ARCHS[0]}))  # the oldest job fails
    export_worker = worker(sessions, store, chunk=1)

    with caplog.at_level(logging.WARNING, logger="latfarm.services.workers.export_worker"):
        assert export_worker.run_once() == 3
    assert recorded(sessions) == Counter((arch, "onnx") for arch in ARCHS[1:4])
    assert [r.getMessage() for r in caplog.records] == [
        f"export of {ARCHS[0]} (onnx, {DEFAULT.key}) failed: cannot export {ARCHS[0]}"
    ]
    store.reset_calls()
    assert export_worker.run_once() == 0  # the failed one waits before it is tried again
    assert not store.calls


def test_replicas_export_the_same_models_concurrently(sessions, tmp_path, caplog):
    dev = make_device(sessions)
    submit(sessions, dev, ARCHS[:8])
    workers = [worker(sessions, TinyArtifactStore(tmp_path / f"replica-{i}"), chunk=3) for i in range(3)]
    barrier = threading.Barrier(len(workers))
    exported: list[int] = []

    def sweep(export_worker: ExportWorker) -> None:
        barrier.wait()
        exported.append(export_worker.run_once())

    threads = [threading.Thread(target=sweep, args=(w,)) for w in workers]
    with caplog.at_level(logging.WARNING, logger="latfarm.services.workers.export_worker"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert not caplog.records
    assert sum(exported) >= 8
    assert recorded(sessions) == Counter((arch, "onnx") for arch in ARCHS[:8])


def test_thread_exports_new_jobs_and_stops_promptly(sessions, tmp_path):
    dev = make_device(sessions)
    export_worker = worker(sessions, TinyArtifactStore(tmp_path / "artifacts"), poll_s=0.05)
    assert export_worker.run_once() == 0
    assert not export_worker.due()  # idle: no batch since the last sweep
    export_worker.start()
    try:
        time.sleep(0.2)
        submit(sessions, dev, ARCHS[:3])
        assert export_worker.due()
        deadline = time.monotonic() + 20
        while len(recorded(sessions)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert recorded(sessions) == Counter((arch, "onnx") for arch in ARCHS[:3])
    finally:
        started = time.monotonic()
        export_worker.stop()
    assert time.monotonic() - started < 1.0
    assert not export_worker.running

    slow = worker(sessions, TinyArtifactStore(tmp_path / "other"), poll_s=60)
    slow.start()
    time.sleep(0.2)
    started = time.monotonic()
    slow.stop()  # waiting out its long poll interval would take a minute
    assert time.monotonic() - started < 1.0


def test_worker_exports_each_conditions_model_and_marks_its_jobs(sessions, tmp_path):
    dev = make_device(sessions)
    batch_4 = DEFAULT.merged({"batch_size": 4})
    submit(sessions, dev, ARCHS[:2])
    submit(sessions, dev, ARCHS[:2], conditions=batch_4)  # the same archs, another model each
    store = CountingStore(tmp_path / "artifacts")

    assert worker(sessions, store, chunk=3).run_once() == 4
    with sessions() as s:
        shapes = {
            (arch, tuple(settings["input_shape"]))
            for arch, settings in s.execute(
                select(Arch.arch, Artifact.settings).join(Arch, Arch.id == Artifact.arch_id)
            )
        }
        marked = s.scalars(select(Job.artifact_sha256)).all()
    assert shapes == {(arch, shape) for arch in ARCHS[:2] for shape in (DEFAULT.input_shape, batch_4.input_shape)}
    assert len(set(marked)) == 4 and None not in marked  # every job points at its own conditions' artifact
    assert worker(sessions, store).run_once() == 0


def job_states(sessions) -> dict[tuple[str, str], tuple[JobState, str | None, bool]]:
    """(arch, format) -> (state, error, whether an artifact is recorded) of each job."""
    with sessions() as s:
        rows = s.execute(
            select(Arch.arch, Job.format, Job.state, Job.error, Job.artifact_sha256).join(Arch, Arch.id == Job.arch_id)
        ).all()
    return {(arch, fmt): (state, error, sha is not None) for arch, fmt, state, error, sha in rows}


def test_a_failed_export_of_a_slow_format_fails_its_jobs_and_of_an_inline_one_leaves_them_to_the_lease(
    sessions, tmp_path
):
    """The lease exports only ``INLINE_FORMATS`` (ONNX): a TFLite export that fails in the worker fails its jobs
    with the reason there, or they would wait forever; a failed ONNX export stays queued for the lease to retry."""
    submit(sessions, make_device(sessions, "dev-lite", runtime="litert"), ARCHS[:2])
    submit(sessions, make_device(sessions), ARCHS[:1])
    store = CountingStore(tmp_path / "artifacts", fail_archs=frozenset({ARCHS[0]}))

    export_worker = worker(sessions, store)  # one conversion process: one TFLite model per sweep
    assert export_worker.run_once() + export_worker.run_once() == 1
    assert job_states(sessions) == {
        (ARCHS[0], "tflite"): (
            JobState.failed,
            f"artifact export failed: RuntimeError: cannot export {ARCHS[0]}",
            False,
        ),
        (ARCHS[1], "tflite"): (JobState.queued, None, True),
        (ARCHS[0], "onnx"): (JobState.queued, None, False),
    }


def test_a_tflite_job_on_a_server_without_the_extra_fails_with_the_extras_message(sessions, tmp_path, monkeypatch):
    stub = tmp_path / "no_extra"  # the tflite extra is not installed: its import fails, in the conversion process too
    stub.mkdir()
    (stub / "litert_torch.py").write_text("raise ImportError('litert_torch is not installed')\n")
    monkeypatch.syspath_prepend(str(stub))  # a conversion process starts with this process's sys.path
    monkeypatch.delitem(sys.modules, "litert_torch", raising=False)
    submit(sessions, make_device(sessions, "dev-lite", runtime="litert"), ARCHS[:1])

    assert worker(sessions, ArtifactStore(tmp_path / "artifacts")).run_once() == 0
    [(state, error, exported)] = job_states(sessions).values()
    assert (state, exported) == (JobState.failed, False)
    assert error.startswith("artifact export failed: ExportUnavailable: TFLite export needs the 'tflite' extra")


def test_the_worker_converts_half_the_cpus_worth_of_slow_models_at_once_unless_set():
    assert [conversion_processes(0, cpus) for cpus in (1, 2, 4, 8, 64)] == [1, 1, 2, 4, 4]
    assert conversion_processes(6, cpus=2) == 6  # as configured

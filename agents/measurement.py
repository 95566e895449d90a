"""The measurement procedure: a busy warm-up, then interleaved rounds over a batch of models (warm-up runs and
timed runs per model per round), a headline statistic, a repeatability check with re-measurement, and failures
classified (load, run, timeout, wrong output, unstable, unsupported) rather than dropped.

Conditions: a job's artifact is measured as it is, at its conditions' batch size, or fails; never substituted.
A runtime without a kernel for an op of an fp16 or int8 job's model fails it ``unsupported`` (for an fp32 job that is
a ``load`` failure: the model, not the conditions); a model whose input batch is not the conditions' batch size
fails ``wrong_output`` (the artifact is not the network the job describes, on any runtime).

The headline: on a shared machine interference only ever adds time, in bursts from milliseconds to seconds
(another tenant's cache and memory traffic). The fastest timed run ("min") estimates the uncontended latency and
is the most repeatable figure between sessions; the median of the round medians ("median") describes the typical
run under the conditions of the moment. Both are always reported; ``MeasureSettings.statistic`` picks the headline.
``bench/agent_repeatability.py`` compares the two.

Timeouts: each model has a wall-clock budget (load + first inference + all its rounds). A watchdog thread
watches the model being run; past the budget it asks the runtime to cancel (onnxruntime: ``RunOptions.terminate``,
honoured between nodes, so the running inference raises). A runtime that cannot cancel (LiteRT), or a call that
does not return within a grace period after cancelling, is a hang: the watchdog calls ``on_hang`` (the agent
reports the timeout, hands its other jobs back and exits, for its supervisor to restart it)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from latfarm.agents.backends import Backend, InputMismatch, LoadedModel, Unsupported, check_outputs
from latfarm.agents.conditions import JobConditions
from latfarm.common.ranges import number, out_of_range, within
from latfarm.proto.v1.limits import LISTS
from latfarm.proto.v1.names import STATISTICS

T = TypeVar("T")

LOAD, RUN, TIMEOUT, WRONG_OUTPUT, UNSTABLE, FETCH = "load", "run", "timeout", "wrong_output", "unstable", "fetch"
UNSUPPORTED = "unsupported"
# The range of each setting a job's protocol (the API's ``MeasureProtocol``) or the agent's options may give, by
# pydantic's bound names (``ge``: at least, ``gt``: more than, ``le``: at most); a result carries one median per round.
BOUNDS: dict[str, dict[str, float]] = {
    "warmup_runs": {"ge": 0, "le": 1000},
    "runs_per_round": {"ge": 1, "le": 10_000},
    "rounds": {"ge": 1, "le": LISTS["round_medians_ms"]},
    "threads": {"ge": 1, "le": 256},
    "timeout_s": {"gt": 0, "le": 3600},
}


@dataclass(frozen=True)
class MeasureSettings:
    """The measurement settings: how many runs and rounds, threads, the per-model time limit, the headline
    statistic and the repeatability check. The agent side of the wire's ``MeasureSettings`` message."""

    warmup_runs: int = 2  # per model per round
    runs_per_round: int = 20  # timed, per model per round
    rounds: int = 10
    threads: int = 1
    timeout_s: float = 120.0  # per model, all rounds included
    busy_warmup_s: float = 1.5  # whole-process warm-up before the first round
    statistic: str = "min"  # the headline: "min" (fastest timed run) or "median" (median of round medians)
    spread_threshold: float = 0.05  # (max - min) / median of round medians above this = not repeatable
    retries: int = 1  # re-measurements of a model that fails the repeatability check
    retry_pause_s: float = 2.0  # idle before re-measuring: lets a burst of interference pass

    def __post_init__(self) -> None:
        """Refuse settings the procedure cannot run (``ValueError``): below the lower of their ``BOUNDS``. The
        upper bounds are the wire's and the options' limits, not the procedure's."""
        for name, bounds in BOUNDS.items():
            lower = {bound: value for bound, value in bounds.items() if bound in ("ge", "gt")}
            if not within(value := getattr(self, name), lower):
                raise ValueError(f"{name} {out_of_range(number(value), lower)}")
        if self.statistic not in STATISTICS:
            raise ValueError(f"unknown statistic {self.statistic!r}: use one of {', '.join(STATISTICS)}")

    def override(self, **values: float | str) -> MeasureSettings:
        """A copy with the non-zero values replacing the defaults (how a job's settings apply)."""
        changes: dict[str, Any] = {k: v for k, v in values.items() if v}  # each value's type matches its field's
        return replace(self, **changes)


@dataclass(frozen=True)
class Stats:
    """One model's timing figures in ms; ``round_spread`` is (max - min) / median of the round medians."""

    latency_ms: float  # the headline, by ``statistic``
    statistic: str
    median_ms: float  # median of the round medians
    mean_ms: float
    std_ms: float
    min_ms: float
    p90_ms: float
    runs: int
    round_medians_ms: list[float]
    round_spread: float


def summarize(rounds_ms: list[list[float]], statistic: str = "min") -> Stats:
    """Statistics of one model's timed runs, grouped by round."""
    medians = [statistics.median(r) for r in rounds_ms]
    runs = np.array([t for r in rounds_ms for t in r])
    median, fastest = statistics.median(medians), float(runs.min())
    return Stats(
        latency_ms=fastest if statistic == "min" else median,
        statistic=statistic,
        median_ms=median,
        mean_ms=float(runs.mean()),
        std_ms=float(runs.std()),
        min_ms=fastest,
        p90_ms=float(np.percentile(runs, 90)),
        runs=int(runs.size),
        round_medians_ms=medians,
        round_spread=(max(medians) - min(medians)) / median if median > 0 else 0.0,
    )


@dataclass
class ModelTask:
    """A model to measure: its job id, its file, its input shape (empty: the shape the model declares) and the
    job's conditions (None: the job has none, from an older server)."""

    key: str  # the job id
    path: Path
    input_shape: list[int] = field(default_factory=list)
    conditions: JobConditions | None = None

    @property
    def batch_size(self) -> int:
        """The batch size the job's conditions ask for; 0 when it has none."""
        return self.conditions.batch_size if self.conditions is not None else 0


@dataclass
class ModelResult:
    """What measuring one model gave: ``stats`` when ``ok``, else an error class (``LOAD`` ... ``UNSUPPORTED``) and
    message;
    load and first-inference times in ms; the execution provider the runtime used."""

    key: str  # the job id
    ok: bool = False
    stats: Stats | None = None
    session_create_ms: float = 0.0
    first_inference_ms: float = 0.0
    error_class: str | None = None
    error_message: str = ""
    unstable: bool = False
    provider: str = ""


def unsteady_share(results: list[ModelResult]) -> float:
    """Share of a batch's measured models that failed the repeatability check: near 1, the machine was busy (or
    throttling) throughout, rather than one model being unsteady."""
    measured = [r for r in results if r.ok]
    return sum(r.unstable for r in measured) / len(measured) if measured else 0.0


class Interrupted(Exception):
    """Measurement stopped because the agent is shutting down."""


class Watchdog:
    """Cancels the model being run when its time is up; calls ``on_hang`` when it still does not return."""

    def __init__(self, on_hang: Callable[[str], None] | None = None, grace_s: float = 5.0):
        """Start the watching thread; a model still running ``grace_s`` after its cancel is a hang."""
        self.on_hang = on_hang
        self.grace_s = grace_s
        self._cond = threading.Condition()
        self._model: LoadedModel | None = None
        self._key = ""
        self._deadline = 0.0
        self._fired = False
        self._closed = False
        self._thread = threading.Thread(target=self._watch, name="latfarm-watchdog", daemon=True)
        self._thread.start()

    def arm(self, model: LoadedModel, seconds: float, key: str = "") -> None:
        """Watch ``model`` (the job ``key``) for ``seconds`` from now."""
        with self._cond:
            self._model, self._key = model, key
            self._deadline, self._fired = time.monotonic() + seconds, False
            self._cond.notify()

    def disarm(self) -> bool:
        """Stop watching; True when the time ran out meanwhile."""
        with self._cond:
            self._model = None
            return self._fired

    def close(self) -> None:
        """Stop the watching thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                if self._model is None:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                if now < self._deadline:
                    self._cond.wait(self._deadline - now)
                    continue
                if not self._fired:
                    self._fired = True
                    self._model.cancel()  # a runtime that cannot cancel is declared hung after the grace period
                    continue
                hang_at = self._deadline + self.grace_s
                if now < hang_at:
                    self._cond.wait(hang_at - now)
                    continue
                self._model = None
                if self.on_hang:
                    self.on_hang(self._key)


def _run_once(model: LoadedModel) -> list[np.ndarray]:
    """One inference: the action for first runs and busy warm-up."""
    return model.run()


class _Entry:
    """One model under measurement: its result so far and the time it has used of its budget."""

    def __init__(self, task: ModelTask):
        self.task = task
        self.result = ModelResult(task.key)
        self.model: LoadedModel | None = None
        self.spent_s = 0.0
        self.run_s = 0.0  # its mean warm-up inference (else its first): what its rounds will take is estimated from it
        self.warmups: list[float] = []  # its busy warm-up inferences, seconds
        self.rounds_ms: list[list[float]] = []

    def fail(self, error_class: str, message: str) -> None:
        self.result.ok, self.result.stats = False, None
        self.result.error_class, self.result.error_message = error_class, message[:2000]
        if self.model is not None:
            self.model.close()
            self.model = None


class BatchMeasurer:
    """Measures a batch of models on one backend, one model at a time, under the measurement settings."""

    def __init__(
        self,
        backend: Backend,
        settings: MeasureSettings,
        stop: threading.Event | None = None,
        on_hang: Callable[[str], None] | None = None,
        part_s: float = 0.0,
    ):
        """``stop`` interrupts the batch between rounds; ``on_hang(job_id)`` is called for a model that hangs;
        ``part_s``: the seconds of rounds a part of the batch takes at least (0: the whole batch is one part)."""
        self.backend = backend
        self.settings = settings
        self.part_s = part_s
        self.stop = stop or threading.Event()
        self.watchdog = Watchdog(on_hang, grace_s=max(5.0, 0.5 * settings.timeout_s))

    def measure(
        self, tasks: list[ModelTask], on_part: Callable[[list[ModelResult]], None] | None = None
    ) -> list[ModelResult]:
        """One result per task, in the tasks' order; raises ``Interrupted`` when the agent is stopping. After the
        warm-up the loaded models are measured in consecutive parts (``_part``), rounds and re-measurements of the
        unsteady (``_settle``) within each; ``on_part`` gets each part's results as it ends (the models that failed
        before, with the first)."""
        entries = [_Entry(t) for t in tasks]
        try:
            for entry in entries:
                self._load(entry)
            self._busy_warmup([e for e in entries if e.model is not None])
            failed = [e for e in entries if e.model is None]  # handed over with the first part
            left, scale = [e for e in entries if e.model is not None], 1.0
            while left:
                part = self._part(left, scale)
                left = left[len(part) :]
                started = time.perf_counter()
                self._measure_rounds(part)
                scale = (time.perf_counter() - started) / max(sum(self._estimate(e) for e in part), 1e-9)
                self._settle(part)
                if on_part is not None:
                    on_part([e.result for e in failed + part])
                failed = []
            if on_part is not None and failed:  # no model loaded: only failures
                on_part([e.result for e in failed])
        finally:
            self.watchdog.close()
            for entry in entries:
                if entry.model is not None:
                    entry.model.close()
        return [e.result for e in entries]

    def _part(self, entries: list[_Entry], scale: float) -> list[_Entry]:
        """The first of ``entries`` whose rounds take at least ``part_s`` (all of them when it is 0, or when they
        take less): by ``_estimate`` times ``scale``, how much longer the last part's rounds took than so estimated.
        On a fast device the whole batch, on a slow or busy one a model or a few, so results go out as they are
        measured."""
        if self.part_s <= 0:
            return entries
        took = 0.0
        for count, entry in enumerate(entries, 1):
            took += self._estimate(entry) * scale
            if took >= self.part_s:
                return entries[:count]
        return entries

    def _estimate(self, entry: _Entry) -> float:
        """Seconds the model's rounds take by its mean warm-up inference (a busy machine's runs included)."""
        return entry.run_s * self.settings.rounds * (self.settings.warmup_runs + self.settings.runs_per_round)

    def _settle(self, entries: list[_Entry]) -> None:
        """Re-measure the unsteady of ``entries`` (``retries`` times at most); those still unsteady are flagged."""
        for attempt in range(self.settings.retries + 1):
            unsteady = [e for e in entries if e.model is not None and self._unsteady(e)]
            if not unsteady:
                break
            if attempt == self.settings.retries:
                for entry in unsteady:
                    entry.result.unstable = True
                break
            self._remeasure(unsteady)

    def _guarded(self, entry: _Entry, action: Callable[[LoadedModel], T]) -> T:
        """Run an action on the entry's loaded model under the watchdog, charging its time to the model's budget."""
        model = entry.model
        assert model is not None, "only a loaded model runs"
        remaining = self.settings.timeout_s - entry.spent_s
        if remaining <= 0:
            raise TimeoutError(f"over the per-model limit of {self.settings.timeout_s:g} s")
        start = time.perf_counter()
        self.watchdog.arm(model, remaining, entry.task.key)
        try:
            value = action(model)
        except Exception as err:
            if self.watchdog.disarm():
                raise TimeoutError(f"over the per-model limit of {self.settings.timeout_s:g} s ({err})") from err
            raise
        finally:
            entry.spent_s += time.perf_counter() - start
        if self.watchdog.disarm():
            raise TimeoutError(f"over the per-model limit of {self.settings.timeout_s:g} s")
        return value

    def _load(self, entry: _Entry) -> None:
        task = entry.task
        start = time.perf_counter()
        try:
            model = self.backend.load(task.path, self.settings.threads, task.input_shape, task.batch_size)
        except Unsupported as err:
            if task.conditions is not None and task.conditions.reduced_precision:
                message = f"{self.backend.runtime} here cannot run this {task.conditions.precision} model: {err}"
                entry.fail(UNSUPPORTED, message)
            else:
                entry.fail(LOAD, f"{type(err).__name__}: {err}")
            return
        except InputMismatch as err:
            entry.fail(WRONG_OUTPUT, str(err))
            return
        except Exception as err:  # noqa: BLE001 - any runtime error is a load failure
            entry.fail(LOAD, f"{type(err).__name__}: {err}")
            return
        entry.model = model
        entry.spent_s = time.perf_counter() - start
        entry.result.session_create_ms = entry.spent_s * 1000
        entry.result.provider = model.provider
        self._first_inference(entry)

    def _first_inference(self, entry: _Entry) -> None:
        start = time.perf_counter()
        try:
            outputs = self._guarded(entry, _run_once)
        except TimeoutError as err:
            entry.fail(TIMEOUT, str(err))
            return
        except Exception as err:  # noqa: BLE001 - any runtime error is a run failure
            entry.fail(RUN, f"{type(err).__name__}: {err}")
            return
        entry.run_s = time.perf_counter() - start
        entry.result.first_inference_ms = entry.run_s * 1000
        problem = check_outputs(outputs, getattr(entry.model, "declared", []), getattr(entry.model, "batch", None))
        if problem:
            entry.fail(WRONG_OUTPUT, problem)

    def _busy_warmup(self, entries: list[_Entry]) -> None:
        """Keep the process busy for a while (clocks up, caches and allocators warm) before any timing."""
        end = time.perf_counter() + self.settings.busy_warmup_s
        while time.perf_counter() < end and entries:
            for entry in entries:
                try:
                    start = time.perf_counter()
                    self._guarded(entry, _run_once)
                    entry.warmups.append(time.perf_counter() - start)
                    entry.run_s = statistics.fmean(entry.warmups)
                except TimeoutError as err:
                    entry.fail(TIMEOUT, str(err))
                except Exception as err:  # noqa: BLE001
                    entry.fail(RUN, f"{type(err).__name__}: {err}")
            entries = [e for e in entries if e.model is not None]

    def _measure_rounds(self, entries: list[_Entry]) -> None:
        for index in range(self.settings.rounds):
            shift = index % len(entries) if entries else 0
            for entry in entries[shift:] + entries[:shift]:  # rotate the order: no model always goes first
                if self.stop.is_set():
                    raise Interrupted("the agent is shutting down")
                if entry.model is not None:
                    self._round(entry)
        for entry in entries:
            if entry.model is not None:
                entry.result.ok = True
                entry.result.stats = summarize(entry.rounds_ms, self.settings.statistic)

    def _round(self, entry: _Entry) -> None:
        def timed_runs(model: LoadedModel) -> list[float]:
            for _ in range(self.settings.warmup_runs):
                model.run()
            times = []
            for _ in range(self.settings.runs_per_round):
                start = time.perf_counter()
                model.run()
                times.append((time.perf_counter() - start) * 1000)
            return times

        try:
            entry.rounds_ms.append(self._guarded(entry, timed_runs))
        except TimeoutError as err:
            entry.fail(TIMEOUT, str(err))
        except Exception as err:  # noqa: BLE001
            entry.fail(RUN, f"{type(err).__name__}: {err}")

    def _unsteady(self, entry: _Entry) -> bool:
        return entry.result.stats is not None and entry.result.stats.round_spread > self.settings.spread_threshold

    def _remeasure(self, entries: list[_Entry]) -> None:
        """Measure the unsteady models again after a pause; keep the steadier of the two attempts."""
        if self.stop.wait(self.settings.retry_pause_s):
            raise Interrupted("the agent is shutting down")
        previous = {id(e): e.result.stats for e in entries}
        for entry in entries:
            entry.rounds_ms = []
        self._measure_rounds(entries)
        for entry in entries:
            old = previous[id(entry)]
            new = entry.result.stats
            if entry.result.ok and old is not None and new is not None and old.round_spread < new.round_spread:
                entry.result.stats = old

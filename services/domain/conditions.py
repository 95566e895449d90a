"""Measurement conditions: what exactly a latency figure was measured on, carried from request to row.

A figure means nothing without its conditions: the search space and its input variant (resolution, classes), the
batch size, the numeric precision and the graph variant of the exported network. They are part of an artifact's
content address, recorded on every measurement, and figures measured under other conditions are never used as
measurements for a device's conditions (predictions, ranking, adaptation).

Graph variants (NB201):
- ``reference``: the network as the benchmark defines it: ``none`` edges compute a zero tensor, every edge is its
  own op. LatBench, HELP and HW-NAS-Bench measured this network; it is the default.
- ``pruned``: ops that cannot affect the output removed (``none`` edges dropped, duplicate ops merged): what a
  deployment would run.

The export format (ONNX, TFLite) is not a condition: a device is one hardware and runtime, and the format is how
the network reaches that runtime; it is recorded with the artifact and the measurement's runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from latfarm.predictor import nb201
from latfarm.services.core.errors import InvalidArgument

PRECISIONS = ("fp32", "fp16", "int8")
GRAPHS = nb201.GRAPHS
SPACES = ("nb201",)
MAX_BATCH_SIZE = 1024
RANGES = {"resolution": (8, 1024), "classes": (1, 100_000), "batch_size": (1, MAX_BATCH_SIZE)}  # integers, inclusive


@dataclass(frozen=True)
class Conditions:
    """One set of measurement conditions. ``key`` is its canonical string (what rows are matched on).

    Fields: ``space`` (search space name), ``resolution`` (input height = width, pixels), ``classes`` (output
    logits), ``batch_size`` (images per inference), ``precision`` (``fp32`` | ``fp16`` | ``int8``), ``graph``
    (``reference`` | ``pruned``). Construction checks every field and raises ``InvalidArgument`` naming it.
    """

    space: str = "nb201"
    resolution: int = 32
    classes: int = 10
    batch_size: int = 1
    precision: str = "fp32"
    graph: str = "reference"

    def __post_init__(self) -> None:
        _check_choice("space", self.space, SPACES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("graph", self.graph, GRAPHS)
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidArgument(f"{name} must be an integer in [{low}, {high}], got {value!r}", field=name)

    @property
    def key(self) -> str:
        """Canonical string, e.g. ``nb201/32px/10cls/b1/fp32/reference``: equal conditions, equal keys."""
        return f"{self.space}/{self.resolution}px/{self.classes}cls/b{self.batch_size}/{self.precision}/{self.graph}"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """The network's input, NCHW."""
        return (self.batch_size, 3, self.resolution, self.resolution)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (how rows and REST responses carry conditions)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Conditions:
        """Conditions from ``to_dict``'s form (missing fields take the defaults); ``InvalidArgument`` on unknown
        fields or bad values."""
        return cls().merged(data)

    def merged(self, overrides: Mapping[str, Any] | None) -> Conditions:
        """These conditions with ``overrides`` applied (a job's request over its device's defaults); ``None``
        values keep the current field."""
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InvalidArgument(f"unknown condition(s) {unknown}; known: {sorted(known)}", field=unknown[0])
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def device_conditions(batch_size: int, precision: str, resolution: int = 32, classes: int = 10) -> Conditions:
    """A device's default conditions: its batch size, precision and input variant (default NB201 on CIFAR-10:
    32 px, 10 classes) on the reference graph."""
    return Conditions(batch_size=batch_size, precision=precision, resolution=resolution, classes=classes)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidArgument(f"{name} must be one of {list(choices)}, got {value!r}", field=name)

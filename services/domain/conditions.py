"""Measurement conditions: what exactly a latency figure was measured on, carried from request to row.

A figure means nothing without its conditions: the search space and its input variant (resolution, classes), the
batch size, the numeric precision and the graph variant of the exported network. They are part of an artifact's
content address, recorded on every measurement, and figures measured under other conditions are never used as
measurements for a device's conditions (predictions, ranking, adaptation).

The search spaces, their input variants and graph variants are the registered spaces' own
(``latfarm.predictor.spaces``): conditions accept a (resolution, classes) only when it is one of the space's input
variants, and a graph only when the space declares it. Every space has ``reference``, the network as its benchmark
defines it (the default); NB201 also has ``pruned`` (ops that cannot affect the output removed).

The export format (ONNX, TFLite) is not a condition: a device is one hardware and runtime, and the format is how
the network reaches that runtime; it is recorded with the artifact and the measurement's runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from latfarm.common.ranges import out_of_range, within
from latfarm.predictor.spaces import SPACES as REGISTERED
from latfarm.predictor.spaces import SearchSpace
from latfarm.services.core.errors import InvalidArgument

PRECISIONS = ("fp32", "fp16", "int8")
SPACES = tuple(REGISTERED)
GRAPHS = tuple(dict.fromkeys(graph for space in REGISTERED.values() for graph in space.graphs))
DEFAULT_SPACE = SPACES[0]
# The integer fields' bounds, by pydantic's names (the API's fields and the command line's options read them here)
RANGES: dict[str, dict[str, int]] = {
    "resolution": {"ge": 8, "le": 1024},
    "classes": {"ge": 1, "le": 100_000},
    "batch_size": {"ge": 1, "le": 1024},
}


@dataclass(frozen=True)
class Conditions:
    """One set of measurement conditions. ``key`` is its canonical string (what rows are matched on).

    Fields: ``space`` (search space name), ``resolution`` (input height = width, pixels), ``classes`` (output
    logits), ``batch_size`` (images per inference), ``precision`` (``fp32`` | ``fp16`` | ``int8``), ``graph``
    (one of the space's ``graphs``). Construction checks every field and raises ``InvalidArgument`` naming it;
    (resolution, classes) must be one of the space's input variants.
    """

    space: str = DEFAULT_SPACE
    resolution: int = 32
    classes: int = 10
    batch_size: int = 1
    precision: str = "fp32"
    graph: str = "reference"

    def __post_init__(self) -> None:
        _check_choice("space", self.space, SPACES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("graph", self.graph, self.search_space.graphs)
        for name, bounds in RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgument(f"{name} must be a whole number, got {value!r}", field=name)
            if not within(value, bounds):
                raise InvalidArgument(f"{name} {out_of_range(value, bounds)}", field=name)
        if self.search_space.variant_at(self.resolution, self.classes) is None:
            variants = self.search_space.input_variants.values()
            field = "classes" if any(v.resolution == self.resolution for v in variants) else "resolution"
            known = ", ".join(f"{v.name} ({v.resolution}px, {v.classes} classes)" for v in variants)
            raise InvalidArgument(
                f"{field}: {self.resolution}px with {self.classes} classes is not an input variant of {self.space}; "
                f"known: {known}",
                field=field,
            )

    @property
    def search_space(self) -> SearchSpace:
        """The registered space these conditions are for."""
        return REGISTERED[self.space]

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
            raise InvalidArgument(
                f"unknown condition(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}", field=unknown[0]
            )
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def for_space(self, space: str) -> Conditions:
        """These conditions for archs of ``space``: same batch size and precision; the input variant and graph kept
        where ``space`` has them, else its default variant and graph (a device's defaults for a job of any space).
        ``InvalidArgument`` naming ``space`` when it is not registered."""
        if space == self.space:
            return self
        _check_choice("space", space, SPACES)
        target = REGISTERED[space]
        variant = target.variant_at(self.resolution, self.classes) or target.variant()
        graph = self.graph if self.graph in target.graphs else target.graphs[0]
        return replace(self, space=space, resolution=variant.resolution, classes=variant.classes, graph=graph)


def device_conditions(batch_size: int, precision: str, resolution: int = 32, classes: int = 10) -> Conditions:
    """A device's default conditions: its batch size, precision and input variant (default NB201 on CIFAR-10:
    32 px, 10 classes) on the reference graph, for the first registered space with that variant
    (``InvalidArgument`` naming ``resolution`` when none has it); ``for_space`` moves them to another space."""
    space = next((s.name for s in REGISTERED.values() if s.variant_at(resolution, classes)), DEFAULT_SPACE)
    return Conditions(space=space, batch_size=batch_size, precision=precision, resolution=resolution, classes=classes)


def space_of(key: str) -> str:
    """The space a conditions ``key`` is for (its first part)."""
    return key.split("/", 1)[0]


def _check_choice(name: str, value: object, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise InvalidArgument(f"{name} must be one of {', '.join(choices)}, got {value!r}", field=name)

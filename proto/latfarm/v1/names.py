"""The wire's enums by the lower-case names both sides use in strings and messages (``STATISTIC_MIN`` -> ``min``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from latfarm.proto.v1 import agent_pb2

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper


def value_names(enum: EnumTypeWrapper, prefix: str) -> dict[str, int]:
    """``enum``'s values by their names without ``prefix``, in lower case, in number order; the unspecified 0 is
    left out."""
    return {name.removeprefix(prefix).lower(): value for name, value in enum.items() if value}


STATISTICS = tuple(value_names(agent_pb2.Statistic, "STATISTIC_"))  # how an agent computes the headline latency
ERROR_CLASSES = value_names(agent_pb2.ErrorClass, "ERROR_CLASS_")  # why a job failed

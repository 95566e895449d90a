"""Measurement conditions: canonical keys, device defaults, request overrides and their validation."""

from __future__ import annotations

import pytest

from latfarm.services.core.errors import InvalidArgument
from latfarm.services.domain.conditions import Conditions, device_conditions


def test_defaults_are_the_reference_nb201_network_at_batch_1_fp32():
    assert Conditions().key == "nb201/32px/10cls/b1/fp32/reference"
    assert Conditions().input_shape == (1, 3, 32, 32)


def test_a_job_overrides_its_device_defaults_field_by_field():
    device = device_conditions(batch_size=32, precision="fp16")
    assert device.key == "nb201/32px/10cls/b32/fp16/reference"
    job = device.merged({"batch_size": 4, "graph": "pruned", "precision": None})
    assert (job.batch_size, job.precision, job.graph) == (4, "fp16", "pruned")
    assert Conditions.from_dict(job.to_dict()) == job


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"batch_size": 4.0}, "batch_size"),
        ({"precision": "bf16"}, "precision"),
        ({"graph": "fused"}, "graph"),
        ({"space": "darts"}, "space"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_conditions_name_the_field(overrides, field):
    with pytest.raises(InvalidArgument) as err:
        Conditions().merged(overrides)
    assert err.value.field == field

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


def test_a_number_outside_its_bounds_is_refused_in_the_apis_words():
    """``common.ranges``' one wording: the API's 422s, the domain's checks and the command line say it alike."""
    with pytest.raises(InvalidArgument, match=r"^batch_size must be between 1 and 1024, got 2000$"):
        Conditions().merged({"batch_size": 2000})
    with pytest.raises(InvalidArgument, match=r"^resolution must be between 8 and 1024, got 4$"):
        Conditions().merged({"resolution": 4})


def test_the_wording_states_every_bound_given():
    from latfarm.common.ranges import out_of_range, within

    assert out_of_range(0, {"ge": 1, "le": 1000}) == "must be between 1 and 1000, got 0"
    assert out_of_range(0, {"gt": 0, "le": 3600.0}) == "must be greater than 0 and at most 3600, got 0"
    assert out_of_range(-1, {"ge": 0}) == "must be at least 0, got -1"
    assert (
        out_of_range(2e7, {"ge": 1e-4, "le": 1e7}, "ms") == "must be between 0.0001 ms and 10000000 ms, got 20000000.0"
    )
    assert within(5, {"ge": 1.5, "le": None}) and not within(float("nan"), {"ge": 0})


def test_spaces_and_graphs_are_the_registered_spaces():
    from latfarm.predictor.spaces import SPACES
    from latfarm.services.domain import conditions

    assert tuple(SPACES) == conditions.SPACES
    assert set(conditions.GRAPHS) == {g for space in SPACES.values() for g in space.graphs}
    assert Conditions(space="fbnet", classes=100).key == "fbnet/32px/100cls/b1/fp32/reference"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"resolution": 64}, "resolution"),
        ({"classes": 10}, "classes"),
        ({"resolution": 224, "classes": 100}, "classes"),
        ({"classes": 100, "graph": "pruned"}, "graph"),
    ],
)
def test_fbnet_conditions_must_be_one_of_its_variants_and_graphs(fields, field):
    with pytest.raises(InvalidArgument) as err:
        Conditions(space="fbnet", **fields)
    assert err.value.field == field


def test_a_devices_conditions_move_to_a_space_keeping_what_it_has():
    device = device_conditions(batch_size=4, precision="fp16")  # NB201 CIFAR-10
    fbnet = device.for_space("fbnet")
    assert fbnet.key == "fbnet/32px/100cls/b4/fp16/reference"  # FBNet's default variant: CIFAR-100
    assert device_conditions(1, "fp32", 32, 100).for_space("fbnet").classes == 100
    imagenet = device_conditions(1, "fp32", 224, 1000)  # only FBNet has ImageNet at 224 px
    assert (imagenet.space, imagenet.for_space("nb201").key) == ("fbnet", "nb201/32px/10cls/b1/fp32/reference")
    assert Conditions(graph="pruned").for_space("fbnet").graph == "reference"
    with pytest.raises(InvalidArgument) as err:
        device.for_space("darts")
    assert err.value.field == "space"

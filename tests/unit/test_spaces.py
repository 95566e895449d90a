"""The search-space interface and registry: every registered space honours it; the NB201 adapter gives exactly what
``predictor/nb201.py`` and ``predictor/network.py`` give."""

from __future__ import annotations

import pytest
import torch

from latfarm.predictor import nb201
from latfarm.predictor.network import build as build_nb201
from latfarm.predictor.spaces import SPACES, ArchError, SearchSpace, UnknownSpace, get_space

NB201 = get_space("nb201")


def test_registry_lists_the_spaces_by_name():
    assert sorted(SPACES) == ["fbnet", "nb201"]
    assert all(isinstance(space, SearchSpace) and SPACES[name] is space for name, space in SPACES.items())
    assert all(get_space(name).name == name for name in SPACES)


def test_unknown_space_names_the_known_ones():
    with pytest.raises(UnknownSpace, match="unknown search space 'ofa'; known: fbnet, nb201$"):
        get_space("ofa")


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_space_honours_the_interface(name):
    space = get_space(name)
    for arch in space.sample(5, seed=0):
        assert len(arch) == space.length and all(0 <= v < space.choices for v in arch)
        text = space.to_string(arch)
        assert space.parse(text) == space.parse(list(arch)) == arch
        assert space.canonical(text) == space.canonical(arch) == text
    assert space.default_variant in space.input_variants
    assert all(v.name == key for key, v in space.input_variants.items())
    with pytest.raises(ArchError, match=f"^{name}: "):
        space.parse([0] * (space.length + 1))
    with pytest.raises(ArchError, match=f"^{name}: "):
        space.parse([space.choices] * space.length)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_space_builds_each_variant(name):
    space = get_space(name)
    arch = space.sample(1, seed=2)[0]
    for variant in space.input_variants.values():
        net = space.build(arch, variant.name)
        x = torch.randn(1, 3, variant.resolution, variant.resolution)
        with torch.no_grad():
            assert net(x).shape == (1, variant.classes)


def test_nb201_adapter_matches_the_nb201_module():
    reference = NB201.reference_set()
    assert reference is not None and len(reference) == nb201.NUM_ARCHS
    for index in (0, 1, 77, 6111, nb201.NUM_ARCHS - 1):
        ops = nb201.from_official_index(index)
        assert reference[index] == ops
        assert NB201.index_of(ops) == NB201.index_of(nb201.to_string(ops)) == index
        assert NB201.canonical(ops) == nb201.to_string(ops)
    arch = " |nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    assert NB201.canonical(arch) == nb201.canonical(arch)
    assert NB201.parse(arch) == nb201.parse(arch)


def test_nb201_adapter_errors_keep_the_nb201_message():
    with pytest.raises(ArchError, match=r"^nb201: .*unknown op 'conv_5x5' on edge 0->1"):
        NB201.parse("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(ArchError, match="op vector entry 2 is 7"):
        NB201.parse([0, 0, 7, 0, 0, 0])


def test_nb201_adapter_builds_the_nb201_network():
    ops = nb201.from_official_index(1234)
    ours, theirs = NB201.build(ops, "cifar100", seed=3), build_nb201(ops, classes=100, seed=3)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(torch.equal(v, theirs.state_dict()[k]) for k, v in ours.state_dict().items())
    assert NB201.build(ops).classifier.out_features == 10  # default variant: CIFAR-10

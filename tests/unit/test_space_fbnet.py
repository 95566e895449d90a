"""The FBNet space (HW-NAS-Bench variant): arch strings and index lists, errors, the network's parameter counts
and shapes, ONNX export against torch, and the 5,000 archs of the HELP release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from latfarm.predictor.spaces import ArchError, get_space
from latfarm.predictor.spaces.fbnet import BLOCKS, FBNetSpace, load_reference

HELP_FBNET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "help-fbnet"
SPACE = get_space("fbnet")
MIXED = [7, 8, 1, 8, 4, 8, 8, 8, 7, 4, 1, 4, 7, 3, 2, 7, 3, 2, 4, 2, 4, 5]  # HELP's arch 0
MIXED_STRING = (
    "k5_e6-skip-k3_e1_g2-skip-k5_e1-skip-skip-skip-k5_e6-k5_e1-k3_e1_g2-k5_e1-k5_e6-k3_e6-k3_e3-k5_e6-k3_e6-k3_e3-"
    "k5_e1-k3_e3-k5_e1-k5_e1_g2"
)
SKIP, K3_E1 = BLOCKS.index("skip"), BLOCKS.index("k3_e1")


def test_names_and_index_lists_round_trip():
    assert SPACE.parse(MIXED_STRING) == tuple(MIXED)
    assert SPACE.parse(MIXED) == tuple(MIXED)
    assert SPACE.to_string(MIXED) == MIXED_STRING
    assert SPACE.canonical(MIXED) == SPACE.canonical(MIXED_STRING) == MIXED_STRING
    assert SPACE.canonical(" - ".join(MIXED_STRING.split("-"))) == MIXED_STRING  # whitespace around names
    assert SPACE.parse(np.array(MIXED)) == tuple(MIXED)
    for arch in SPACE.sample(20, seed=1):
        assert SPACE.parse(SPACE.to_string(arch)) == arch


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ("-".join(["skip"] * 21), "has 21 blocks joined by '-', expected 22"),
        (
            "-".join(["skip"] * 5 + ["k7_e1"] + ["skip"] * 16),
            "unknown block 'k7_e1' at position 5; expected one of k3_e1, k3_e1_g2, k3_e3, k3_e6, k5_e1, k5_e1_g2, "
            "k5_e3, k5_e6, skip",
        ),
        ("-".join(["skip"] * 21 + [""]), "unknown block '' at position 21"),
        ([8] * 23, "arch has 23 entries, expected 22"),
        ([0] * 3 + [9] + [0] * 18, "position 3 holds 9, outside 0..8"),
        ([0] * 21 + [-1], "position 21 holds -1, outside 0..8"),
        ([0] * 10 + ["k3_e1"] + [0] * 11, "position 10 holds 'k3_e1', expected an integer"),
        ([0] * 10 + [True] + [0] * 11, "position 10 holds True, expected an integer"),
        (42, "arch must be a string or a list of 22 integers"),
    ],
)
def test_bad_archs_name_what_and_where(arch, message):
    with pytest.raises(ArchError, match="^fbnet: ") as excinfo:
        SPACE.parse(arch)
    assert message in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_sampling_is_seeded_and_covers_every_block():
    first, again, other = SPACE.sample(200, seed=3), SPACE.sample(200, seed=3), SPACE.sample(200, seed=4)
    assert first == again != other
    assert all(len(a) == 22 for a in first)
    assert {b for a in first for b in a} == set(range(9))


# --- parameter counts, from the block formulas (weights of convs without bias; BN: weight and bias) -----------
def conv_bn_params(c_in: int, c_out: int, kernel: int, groups: int = 1) -> int:
    return c_out * (c_in // groups) * kernel * kernel + 2 * c_out


def layer_params(name: str, c_in: int, c_out: int, stride: int) -> int:
    if name == "skip":
        return 0 if (stride == 1 and c_in == c_out) else conv_bn_params(c_in, c_out, 1)
    parts = dict((p[0], int(p[1:])) for p in name.split("_"))
    hidden, groups = parts["e"] * c_in, parts.get("g", 1)
    return (
        conv_bn_params(c_in, hidden, 1, groups)
        + conv_bn_params(hidden, hidden, parts["k"], hidden)
        + conv_bn_params(hidden, c_out, 1, groups)
    )


CIFAR_LAYERS = [  # (c_in, c_out, stride) of the 22 layers, written out from the HW-NAS-Bench macro structure
    (16, 16, 1),
    (16, 24, 1), (24, 24, 1), (24, 24, 1), (24, 24, 1),
    (24, 32, 2), (32, 32, 1), (32, 32, 1), (32, 32, 1),
    (32, 64, 2), (64, 64, 1), (64, 64, 1), (64, 64, 1),
    (64, 112, 1), (112, 112, 1), (112, 112, 1), (112, 112, 1),
    (112, 184, 2), (184, 184, 1), (184, 184, 1), (184, 184, 1),
    (184, 352, 1),
]  # fmt: skip


def expected_params(blocks: list[int], head: int, classes: int) -> int:
    body = sum(layer_params(BLOCKS[b], *layer) for b, layer in zip(blocks, CIFAR_LAYERS, strict=True))
    return conv_bn_params(3, 16, 3) + body + conv_bn_params(352, head, 1) + head * classes + classes


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_all_skip_parameters_by_hand():
    # stem 3*16*9 + 32; skips that change shape: 16->24, 24->32, 32->64, 64->112, 112->184, 184->352 (1x1 + BN);
    # head 352*1504 + 2*1504; classifier 1504*100 + 100
    stem = 3 * 16 * 9 + 2 * 16
    skips = sum(a * b + 2 * b for a, b in [(16, 24), (24, 32), (32, 64), (64, 112), (112, 184), (184, 352)])
    head = 352 * 1504 + 2 * 1504 + 1504 * 100 + 100
    assert count(SPACE.build([SKIP] * 22)) == stem + skips + head == expected_params([SKIP] * 22, 1504, 100)


@pytest.mark.parametrize("blocks", [[K3_E1] * 22, MIXED, [BLOCKS.index("k5_e1_g2")] * 22])
def test_parameters_match_the_block_formulas(blocks):
    assert count(SPACE.build(blocks)) == expected_params(blocks, 1504, 100)


def test_imagenet_variant_has_its_head_and_classes():
    # ImageNet strides differ in stage 2 (2 instead of 1) but parameters depend only on channels: same body
    net = SPACE.build(MIXED, "imagenet")
    assert count(net) == expected_params(MIXED, 1984, 1000)


@pytest.mark.parametrize(
    ("variant", "shape", "final", "classes"),
    [("cifar100", (2, 3, 32, 32), (352, 4, 4), 100), ("imagenet", (1, 3, 224, 224), (352, 7, 7), 1000)],
)
def test_output_shapes_and_final_resolution(variant, shape, final, classes):
    net = SPACE.build(MIXED, variant)
    with torch.no_grad():
        assert net.layers(net.stem(torch.randn(*shape))).shape[1:] == final
        assert net(torch.randn(*shape)).shape == (shape[0], classes)
    assert not net.training


def test_unknown_variant_names_the_known_ones():
    with pytest.raises(ArchError, match=r"unknown input variant 'imagenet16'.*'cifar100', 'imagenet'"):
        SPACE.build(MIXED, "imagenet16")


def test_weights_are_seeded():
    a, b, c = SPACE.build(MIXED, seed=1), SPACE.build(MIXED, seed=1), SPACE.build(MIXED, seed=2)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        assert not torch.allclose(a(x), c(x))


def test_grouped_blocks_shuffle_channels():
    net = SPACE.build([BLOCKS.index("k3_e1_g2")] * 22)
    first = net.layers[0].body
    assert [type(m).__name__ for m in first] == ["Sequential", "ChannelShuffle", "Sequential", "Sequential"]
    x = torch.arange(8.0).reshape(1, 8, 1, 1)
    assert first[1](x).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter is deprecated, not gone
def test_onnx_export_matches_torch(tmp_path):
    arch = SPACE.sample(1, seed=7)[0]
    net = SPACE.build(arch)
    x = torch.randn(2, 3, 32, 32)
    path = tmp_path / "fbnet.onnx"
    torch.onnx.export(net, (x,), str(path), opset_version=17, dynamo=False, input_names=["x"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_help_reference_set_loads_and_parses():
    if not HELP_FBNET.is_dir():
        pytest.skip(f"HELP FBNet data absent at {HELP_FBNET}")
    archs = load_reference(HELP_FBNET)
    assert len(archs) == 5000
    assert archs == SPACE.reference_set()  # the shipped reference set is the release's arch.pt, position by position
    meta = torch.load(HELP_FBNET / "metainfo.pt", weights_only=False)["arch"]
    for position, (arch, entry) in enumerate(zip(archs, meta, strict=True)):
        assert SPACE.parse(arch) == arch
        assert SPACE.to_string(arch) == "-".join(entry["arch_str"])
        assert SPACE.index_of("-".join(entry["arch_str"])) == position


def test_shipped_reference_set_by_position():
    reference = SPACE.reference_set()
    assert len(reference) == 5000 and len(set(reference)) == 5000
    assert reference[0] == tuple(MIXED)  # HELP's arch 0
    assert SPACE.index_of(MIXED_STRING) == SPACE.index_of(MIXED) == 0
    assert SPACE.index_of(reference[4999]) == 4999
    assert SPACE.index_of([K3_E1] * 22) is None  # most of the 9^22 archs are in no dataset
    assert not SPACE.enumerated and get_space("nb201").enumerated


def test_reference_from_arch_pt_alone(tmp_path):
    torch.save([MIXED, [SKIP] * 22], tmp_path / "arch.pt")
    assert load_reference(tmp_path) == (tuple(MIXED), (SKIP,) * 22)
    space = FBNetSpace(load_reference(tmp_path))
    assert space.index_of([SKIP] * 22) == 1
    assert space.index_of([K3_E1] * 22) is None and space.index_of(MIXED) == 0


def test_reference_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither metainfo.pt nor arch.pt"):
        load_reference(tmp_path)
    torch.save([MIXED, [0] * 21], tmp_path / "arch.pt")
    with pytest.raises(ArchError, match="reference arch 1: fbnet: arch has 21 entries"):
        load_reference(tmp_path)

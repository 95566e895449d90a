"""HELP FBNet data in and out of the store: import (all or chosen devices, idempotent), refusals of the wrong space
or bad files with nothing stored, and CSV / LatBench-style pickle export, over the CLI, the store functions and
REST."""

from __future__ import annotations

import csv
import io
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select

from latfarm.predictor.spaces import get_space
from latfarm.services import datasets
from latfarm.services.store.models import Arch, Device, Measurement
from tests.api_support import ADMIN

FBNET_DIR = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "help-fbnet"
NB201_DIR = FBNET_DIR.parent / "help-nb201"
FBNET = get_space("fbnet")
N_ARCHS = 5000


@pytest.fixture
def fbnet_dir():
    if not (FBNET_DIR / "metainfo.pt").exists():
        pytest.skip(f"shared HELP FBNet data not found at {FBNET_DIR}")
    return FBNET_DIR


def fbnet_subset(tmp_path: Path, devices: tuple[str, ...], layout: str = "arch.pt") -> Path:
    """A HELP FBNet folder with ``devices`` and one arch file (``arch.pt`` or ``metainfo.pt``)."""
    folder = tmp_path / f"fbnet-{layout}"
    (folder / "latency").mkdir(parents=True)
    shutil.copy(FBNET_DIR / layout, folder)
    for name in devices:
        shutil.copy(FBNET_DIR / "latency" / f"{name}.pt", folder / "latency")
    return folder


def _counts(sessions) -> tuple[int, int]:
    with sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Measurement)),
            session.scalar(select(func.count()).select_from(Arch)),
        )


def test_import_fbnet_devices_by_position_with_their_conditions(sessions, fbnet_dir):
    with sessions() as session, session.begin():
        added = datasets.import_help(
            session, fbnet_dir, progress=False, space="fbnet", devices=["titanx_32", "samsung_s7"]
        ).added
    assert added == 2 * N_ARCHS
    archs = torch.load(fbnet_dir / "arch.pt")
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Device)) == 2
        stored = dict(session.execute(select(Arch.reference_index, Arch.arch).where(Arch.space == "fbnet")).all())
        assert len(stored) == N_ARCHS and stored[123] == FBNET.to_string(archs[123])
        shipped = FBNET.reference_set()  # the rows' positions are the shipped reference set's
        assert stored == {position: FBNET.to_string(arch) for position, arch in enumerate(shipped)}
        keys = dict(session.execute(select(Device.name, Measurement.conditions_key).join(Device).distinct()).all())
        assert keys == {
            "titanx_32": "fbnet/32px/100cls/b32/fp32/reference",
            "samsung_s7": "fbnet/32px/100cls/b1/fp32/reference",
        }
        expected = torch.load(fbnet_dir / "latency" / "titanx_32.pt")
        for position in (0, 4321, N_ARCHS - 1):
            got = session.execute(
                select(Measurement.latency_ms)
                .join(Device)
                .join(Arch, Arch.id == Measurement.arch_id)
                .where(Device.name == "titanx_32", Arch.reference_index == position)
            ).scalar_one()
            assert got == pytest.approx(expected[position])
        assert {d for (d,) in session.execute(select(Measurement.dataset).distinct())} == {"help-fbnet"}
    with sessions() as session, session.begin():
        again = datasets.import_help(session, fbnet_dir, progress=False, space="fbnet", devices=["titanx_32"])
        assert again == datasets.Imported(0, N_ARCHS)


def test_metainfo_and_arch_layouts_store_the_same_archs(sessions, fbnet_dir, tmp_path):
    with sessions() as session, session.begin():
        datasets.import_help(session, fbnet_subset(tmp_path, ("pixel3",), "metainfo.pt"), False, space="fbnet")
        assert datasets.import_help(session, fbnet_subset(tmp_path, ("pixel3",)), False, space="fbnet").added == 0
    assert _counts(sessions)[0] == N_ARCHS


def test_a_folder_in_another_order_keeps_the_spaces_positions(sessions, tmp_path):
    """A folder's arch list only says which arch each latency belongs to; a row's position is its arch's position in
    the space's reference set (none for an arch outside it)."""
    shipped = FBNET.reference_set()
    outside = [0] * 22  # k3_e1 everywhere: not among HELP's 5,000
    (tmp_path / "latency").mkdir()
    torch.save([list(shipped[4999]), outside, list(shipped[3])], tmp_path / "arch.pt")
    torch.save([1.5, 2.5, 3.5], tmp_path / "latency" / "pixel3.pt")
    with sessions() as session, session.begin():
        assert datasets.import_help(session, tmp_path, progress=False, space="fbnet") == datasets.Imported(3)
    with sessions() as session:
        rows = session.execute(select(Arch.arch, Arch.reference_index, Measurement.latency_ms).join(Measurement)).all()
    assert sorted(rows, key=lambda row: row[2]) == [
        (FBNET.to_string(shipped[4999]), 4999, 1.5),
        (FBNET.to_string(outside), None, 2.5),
        (FBNET.to_string(shipped[3]), 3, 3.5),
    ]


@pytest.mark.parametrize(
    ("make", "space", "devices", "named"),
    [
        (lambda tmp: FBNET_DIR, "nb201", None, "use --space fbnet"),
        (lambda tmp: NB201_DIR, "fbnet", None, "use --space nb201"),
        (lambda tmp: FBNET_DIR, "ofa", None, "--space: unknown search space 'ofa'"),
        (lambda tmp: FBNET_DIR, "fbnet", ["titanx_32", "nope"], "--device: no latency/nope.pt"),
        (lambda tmp: _with_nb201_latency(tmp), "fbnet", None, "expected 5000 latencies"),
        (lambda tmp: _with_bad_arch(tmp), "fbnet", None, "position 7 holds 9"),
    ],
)
def test_bad_fbnet_imports_say_what_and_store_nothing(sessions, fbnet_dir, tmp_path, make, space, devices, named):
    if not (NB201_DIR / "str_arch2idx.pt").exists():
        pytest.skip(f"shared HELP NB201 data not found at {NB201_DIR}")
    with sessions() as session, pytest.raises(datasets.DatasetError) as err, session.begin():
        datasets.import_help(session, make(tmp_path), progress=False, space=space, devices=devices)
    assert named in str(err.value) and "\n" not in str(err.value)
    assert _counts(sessions) == (0, 0)


def _with_nb201_latency(tmp_path: Path) -> Path:
    folder = fbnet_subset(tmp_path, ("pixel3",))
    shutil.copy(NB201_DIR / "latency" / "pixel3.pt", folder / "latency" / "pixel3.pt")
    return folder


def _with_bad_arch(tmp_path: Path) -> Path:
    folder = fbnet_subset(tmp_path, ("pixel3",))
    archs = torch.load(folder / "arch.pt")
    archs[42] = [*archs[42][:7], 9, *archs[42][8:]]
    torch.save(archs, folder / "arch.pt")
    return folder


def test_fbnet_export_as_csv_and_pickle_over_rest(api, fbnet_dir, tmp_path):
    folder = fbnet_subset(tmp_path, ("pixel3",))
    with api.app.state.sessions() as session, session.begin():
        datasets.import_help(session, folder, progress=False, space="fbnet")
    response = api.get("/v1/devices/pixel3/export", params={"space": "fbnet"}, headers=ADMIN)
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.text)))
    expected = torch.load(folder / "latency" / "pixel3.pt")
    archs = torch.load(folder / "arch.pt")
    assert len(rows) == N_ARCHS and rows[10]["fbnet_index"] == "10" and rows[10]["classes"] == "100"
    assert rows[10]["ops"] == "".join(str(b) for b in archs[10]) and rows[10]["arch"] == FBNET.to_string(archs[10])
    assert float(rows[10]["latency_ms"]) == pytest.approx(expected[10])
    data = api.get("/v1/devices/pixel3/export", params={"space": "fbnet", "format": "latbench"}, headers=ADMIN)
    exported = pickle.loads(data.content)
    assert len(exported) == len({tuple(a) for a in archs})
    assert exported[tuple(archs[10])] * 1000 == pytest.approx(expected[10])
    wrong = api.get("/v1/devices/pixel3/export", params={"space": "nb201"}, headers=ADMIN)
    assert wrong.status_code == 422 and "no nb201 measurements" in wrong.json()["message"]
    unknown = api.get("/v1/devices/pixel3/export", params={"space": "ofa"}, headers=ADMIN)
    assert unknown.status_code == 422 and "space" in unknown.json()["message"]


def test_imported_fbnet_rows_are_found_by_position_and_string(api, fbnet_dir, tmp_path):
    folder = fbnet_subset(tmp_path, ("pixel3",))
    with api.app.state.sessions() as session, session.begin():
        datasets.import_help(session, folder, progress=False, space="fbnet")
    archs = torch.load(folder / "arch.pt")
    for value in ("17", FBNET.to_string(archs[17])):
        params = {"space": "fbnet", "arch": value}
        (item,) = api.get("/v1/measurements", params=params, headers=ADMIN).json()["items"]
        assert (item["arch"], item["index"], item["nb201_index"]) == (FBNET.to_string(archs[17]), 17, None)
        assert item["conditions"]["key"] == "fbnet/32px/100cls/b1/fp32/reference"


def test_a_help_folders_space_is_read_from_its_files(fbnet_dir, tmp_path):
    """What ``latfarm up --datasets DIR`` imports the folder as (it takes no --space)."""
    from latfarm.services.datasets.help import folder_space

    assert folder_space(fbnet_dir) == "fbnet"
    assert folder_space(fbnet_subset(tmp_path, ("pixel3",), layout="metainfo.pt")) == "fbnet"
    assert folder_space(NB201_DIR) == "nb201"
    assert folder_space(tmp_path / "empty") is None

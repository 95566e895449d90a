"""The install line for a missing extra names what this installation was installed from (``core.extras``)."""

import json

import pytest

from latfarm.services.core.extras import install_command


def _dist_info(root, direct_url):
    info = root / "latfarm-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: latfarm\nVersion: 0.1.0\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    return [str(root)]


@pytest.mark.parametrize(
    ("direct_url", "expected"),
    [
        (
            {"url": "file:///home/me/latfarm-0.1.0-py3-none-any.whl", "archive_info": {}},
            "pip install '/home/me/latfarm-0.1.0-py3-none-any.whl[client]'",
        ),
        ({"url": "file:///src/latfarm", "dir_info": {"editable": True}}, "pip install -e '/src/latfarm[client]'"),
        ({"url": "https://example.org/latfarm.whl", "archive_info": {}}, "pip install 'latfarm[client]'"),
        (None, "pip install 'latfarm[client]'"),
    ],
)
def test_the_hint_installs_from_where_latfarm_came_from(tmp_path, direct_url, expected):
    assert install_command("client", _dist_info(tmp_path, direct_url)) == expected


def test_no_latfarm_on_the_path_gives_the_plain_line(tmp_path):
    assert install_command("server", [str(tmp_path)]) == "pip install 'latfarm[server]'"

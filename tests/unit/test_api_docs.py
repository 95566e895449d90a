"""/docs, /redoc and / work offline: every URL the pages load is local and served with the right content type."""

from __future__ import annotations

import re

import pytest

ASSET_URL = re.compile(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]|spec-url=['"]([^'"]+)['"]""")


def urls_in(html: str) -> list[str]:
    return [a or b for a, b in ASSET_URL.findall(html)]


@pytest.mark.parametrize(
    ("page", "types"),
    [
        ("/docs", {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}),
        ("/redoc", {".js": "javascript", ".png": "image/png", ".json": "application/json"}),
    ],
)
def test_docs_pages_load_only_local_assets(api, page, types):
    response = api.get(page)
    assert response.status_code == 200
    urls = urls_in(response.text)
    assert urls, response.text
    assert not [url for url in urls if not url.startswith("/")], "remote URL in the page"
    assert "fonts.googleapis" not in response.text and "cdn" not in response.text.lower()
    served = {}
    for url in urls:
        asset = api.get(url)
        assert asset.status_code == 200, url
        suffix = "." + url.rsplit(".", 1)[-1]
        assert types[suffix] in asset.headers["content-type"], (url, asset.headers["content-type"])
        served[suffix] = len(asset.content)
    assert set(served) == set(types)
    assert served[".js"] > 500_000  # the real bundle, not a stub


def test_openapi_schema_behind_docs_lists_the_operations(api):
    paths = api.get("/openapi.json").json()["paths"]
    assert "/v1/predict" in paths and "/" not in paths and "/docs" not in paths


def test_root_points_to_docs_admin_and_health(api):
    response = api.get("/")
    assert response.status_code == 200
    links = response.json()["links"]
    for name in ("docs", "redoc", "admin", "healthz"):
        assert api.get(links[name], follow_redirects=False).status_code in (200, 302, 303, 307), name
    assert links["docs"] == "/docs" and links["admin"] == "/admin/" and links["healthz"] == "/healthz"


def test_vendored_redoc_requests_no_remote_logo():
    from latfarm.services.api.docs import STATIC_DIR

    assert "cdn.redoc.ly" not in (STATIC_DIR / "redoc.standalone.js").read_text()


def test_the_docs_list_every_routes_tag_in_the_fixed_order(api):
    from latfarm.services.api.app import OPENAPI_TAGS

    schema = api.get("/openapi.json").json()
    used = {tag for item in schema["paths"].values() for operation in item.values() for tag in operation["tags"]}
    listed = [tag["name"] for tag in schema["tags"]]
    assert listed == [tag["name"] for tag in OPENAPI_TAGS] and used == set(listed)

"""How to install one of latfarm's package extras, said the way this installation can take it."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from urllib.parse import unquote, urlparse


def install_command(extra: str, path: list[str] | None = None) -> str:
    """The ``pip install`` line that adds ``extra`` to this installation: from the wheel file or checkout it was
    installed from (pip's ``direct_url.json`` of the first latfarm distribution on ``path``, default ``sys.path``;
    latfarm is not on PyPI), else ``pip install 'latfarm[EXTRA]'``."""
    found = metadata.distributions(name="latfarm", path=sys.path if path is None else path)
    recorded = (dist.read_text("direct_url.json") for dist in found)
    try:
        direct = json.loads(next((text for text in recorded if text), "null"))
    except ValueError:
        direct = None
    url = urlparse(direct.get("url", "")) if isinstance(direct, dict) else None
    if url is None or url.scheme != "file":
        return f"pip install 'latfarm[{extra}]'"
    editable = bool(direct.get("dir_info", {}).get("editable"))
    return f"pip install {'-e ' if editable else ''}'{unquote(url.path)}[{extra}]'"

"""Regenerate ``docs/admin-dashboard.png``: a fresh latfarm server with a few HELP devices imported, its admin
dashboard photographed in headless Chromium.

    .venv/bin/python docs/make_screenshot.py [--help-dir DIR] [--out PATH] [--device NAME]
"""

from __future__ import annotations

import argparse
import secrets
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from latfarm.services.api.app import create_app
from latfarm.services.core.config import Settings
from latfarm.services.datasets import import_help
from latfarm.services.runtime import Runtime
from latfarm.services.store.db import transaction

ROOT = Path(__file__).resolve().parents[1]
DEVICES = [
    "1080ti_1",
    "2080ti_32",
    "titan_rtx_1",
    "gold_6240",
    "silver_4114",
    "pixel3",
    "samsung_a50",
    "essential_ph_1",
]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def help_subset(help_dir: Path, devices: list[str], into: Path) -> Path:
    """A HELP-layout folder holding only ``devices`` (symlinks into ``help_dir``)."""
    (into / "latency").mkdir(parents=True)
    (into / "str_arch2idx.pt").symlink_to(help_dir / "str_arch2idx.pt")
    for name in devices:
        (into / "latency" / f"{name}.pt").symlink_to(help_dir / "latency" / f"{name}.pt")
    return into


def serve(app) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Run ``app`` on a free local port in a thread; returns its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--help-dir", type=Path, default=ROOT.parent / "shared" / "datasets" / "help-nb201")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "admin-dashboard.png")
    parser.add_argument("--device", default="gold_6240", help="device shown in the histogram and scatter")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        admin_key = secrets.token_urlsafe(16)
        runtime = Runtime(Settings(data_dir=Path(tmp) / "data", admin_key=admin_key))
        runtime.bootstrap()
        app = create_app(runtime)
        with transaction(app.state.sessions) as session:
            rows = import_help(session, help_subset(args.help_dir, DEVICES, Path(tmp) / "help"), progress=False).added
        print(f"imported {rows:,} measurements of {len(DEVICES)} devices")
        base, server, thread = serve(app)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
                page.goto(f"{base}/admin/login")
                page.fill("input[name=key]", admin_key)
                page.click("button[type=submit]")
                page.wait_for_url(f"{base}/admin/")
                page.select_option("#device-select", label=args.device)
                for title in ("histogram-title", "scatter-title"):  # the scatter may wait for a predictor fit
                    page.wait_for_function(
                        f"(name) => document.getElementById('{title}').textContent.includes(name)",
                        arg=args.device,
                        timeout=180_000,
                    )
                page.wait_for_load_state("networkidle")
                for chart in ("distribution", "histogram", "arch"):
                    page.wait_for_selector(f"#chart-{chart}[data-rendered]", state="attached")
                height = page.evaluate("document.documentElement.scrollHeight")
                page.set_viewport_size({"width": 1440, "height": height})  # the fixed sidebar spans the whole page
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            server.should_exit = True
            thread.join(10)
            runtime.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

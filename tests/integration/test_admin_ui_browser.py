"""The admin web UI in a real headless Chromium against a real server: login, dashboard charts, filters."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from latfarm.services.core.config import Settings
from latfarm.services.store.crud import ensure_archs
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Measurement, Source
from tests.api_support import app_on, serving
from tests.unit.test_admin_ui import ADMIN_KEY, N_ARCHS, seed

FBNET_ARCH = "-".join(["k3_e6", "k5_e1_g2", "skip"] * 7 + ["k5_e6"])  # 22 blocks, in no reference set

CHROMIUM = Path("/usr/bin/chromium")
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


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is required on CI (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium) so the browser test cannot run")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def live_server(tmp_path):
    """The seeded admin app on a real uvicorn server in a thread, on a free port."""
    settings = Settings(data_dir=tmp_path, admin_key=ADMIN_KEY, heartbeat_interval_s=10)
    with app_on(settings) as app, serving(app) as url:
        ids = seed(app.state.sessions)
        with transaction(app.state.sessions) as session:  # a quarantined row and an FBNet row on new-c
            row = session.scalars(select(Measurement).where(Measurement.device_id == ids["devices"]["new-c"])).first()
            row.quarantined = True
            fbnet = ensure_archs(session, [FBNET_ARCH], space="fbnet")[FBNET_ARCH]
            session.add(
                Measurement(
                    device_id=row.device_id,
                    arch_id=fbnet,
                    source=Source.measured,
                    latency_ms=21.5,
                    median_ms=22.0,
                    protocol={"statistic": "min"},
                    conditions_key=row.conditions_key,
                )
            )
        yield url, ids


CANVAS_PAINTED = """(id) => {
    const canvas = document.getElementById(id);
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) painted++;
    return painted;
}"""


@pytest.mark.browser
def test_browser_login_dashboard_and_filter(browser, live_server):
    base, ids = live_server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))

    page.goto(f"{base}/admin/")
    assert page.url == f"{base}/admin/login"  # no key, no admin
    page.fill("input[name=key]", "wrong-key")
    page.click("button[type=submit]")
    assert page.locator(".invalid-feedback").is_visible()
    page.fill("input[name=key]", ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin/")

    for chart in ("chart-distribution", "chart-histogram", "chart-arch"):
        page.wait_for_selector(f"#{chart}[data-rendered]", state="attached", timeout=15_000)
        assert page.evaluate(CANVAS_PAINTED, chart) > 1000, f"{chart} is blank"
    page.select_option("#device-select", label="gpu-b")
    page.wait_for_function("document.getElementById('scatter-title').textContent.includes('gpu-b, Spearman')")
    page.wait_for_selector("#chart-scatter[data-rendered]", state="attached")
    assert page.evaluate(CANVAS_PAINTED, "chart-scatter") > 1000
    page.select_option("#device-select", label="new-c")
    page.wait_for_function("document.getElementById('scatter-message').textContent.includes('no predictor')")
    assert page.locator("#chart-scatter").is_hidden()
    assert "1 online" in page.inner_text("#agents-online")
    assert "0 queued" in page.inner_text("#queue-depth")  # the seeded queued jobs' device has no agent online
    assert "2 waiting for an agent" in page.inner_text("#queue-waiting")

    page.goto(f"{base}/admin/measurement/list")  # filter by device with the sidebar's device filter
    page.locator("#filter-sidebar a", has_text="phone-a").click()
    page.wait_for_url(f"**device_id={ids['devices']['phone-a']}**")
    assert f"of {N_ARCHS} items" in page.inner_text("body")
    device_cells = page.locator("table tbody tr td:nth-child(4)").all_inner_texts()
    assert device_cells and set(device_cells) == {"phone-a"}

    page.goto(f"{base}/admin/device/list")  # device -> overview with predictor status and its plots
    page.locator("a", has_text="overview & predictor").first.click()
    page.wait_for_selector("#predictor-status-nb201")
    page.wait_for_selector("#chart-histogram[data-rendered]", state="attached")
    assert page.evaluate(CANVAS_PAINTED, "chart-histogram") > 1000
    page.click("#device-measurements")
    assert "items" in page.inner_text("body")

    page.click("text=Logout")  # a POST with the session's CSRF token (csrf.js)
    page.wait_for_url(f"{base}/admin/login")
    page.goto(f"{base}/admin/")
    assert page.url == f"{base}/admin/login"
    assert not errors, errors


@pytest.mark.browser
def test_browser_actions_and_deletes_post_the_csrf_token(browser, live_server):
    """#18 item 4: the list's quarantine action and a row's delete go through as POST / DELETE with the token."""
    base, ids = live_server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(f"{base}/admin/login")
    page.fill("input[name=key]", ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin/")

    page.goto(f"{base}/admin/measurement/list?device_id={ids['devices']['phone-a']}")
    page.locator("input.select-box").first.check()
    page.click("#dropdownMenuButton")
    page.click("#action-customconfirm-quarantine")
    page.click("#action-custom-modal-quarantine")
    page.wait_for_url(f"{base}/admin/measurement/list")
    page.goto(f"{base}/admin/measurement/list?device_id={ids['devices']['phone-a']}&quarantined=true")
    assert "of 1 items" in page.inner_text("body")  # phone-a's: the fixture's own quarantined row is new-c's

    page.goto(f"{base}/admin/job/list")
    before = int(re.search(r"of (\d+) items", page.inner_text("body")).group(1))
    page.locator("a[data-bs-target='#modal-delete'][data-pk]").first.click()
    # sqladmin fills the button's target in the modal's `shown` event, after the fade: click only once it is set
    page.wait_for_function("document.querySelector('#modal-delete-button').getAttribute('data-url')")
    with page.expect_response(lambda response: response.request.method == "DELETE") as deleted:
        page.click("#modal-delete-button")
    assert deleted.value.ok, (deleted.value.status, deleted.value.text())
    page.wait_for_function(f"document.body.innerText.includes('of {before - 1} items')")
    assert not errors, errors


def _visible_without_scrolling(page, selector: str) -> bool:
    """The element lies inside the 1400 px viewport and its table needs no horizontal scrolling to reach it."""
    return page.evaluate(
        """(sel) => {
            const el = document.querySelector(sel);
            if (!el) return false;
            const box = el.getBoundingClientRect();
            return box.width > 0 && box.right <= window.innerWidth;
        }""",
        selector,
    )


@pytest.mark.browser
def test_browser_tables_show_the_data_at_1400px(browser, live_server):
    base, ids = live_server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/admin/login")
    page.fill("input[name=key]", ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin/")

    page.goto(f"{base}/admin/measurement/list?device_id={ids['devices']['new-c']}")
    headers = [h.strip() for h in page.locator("table thead th").all_inner_texts()]
    for header in ("latency_ms (statistic)", "unstable", "quarantined", "arch"):  # the leading columns fit
        assert _visible_without_scrolling(page, f"table thead th:nth-child({headers.index(header) + 1})"), header
    latency_column = headers.index("latency_ms (statistic)") + 1
    cells = page.locator(f"table tbody tr td:nth-child({latency_column})").all_inner_texts()
    assert len(cells) == 3 and all("(min)" in cell for cell in cells)  # latency_ms with its statistic
    warning = page.locator("table tbody .badge.bg-warning", has_text="unstable")
    assert warning.count() == 1 and warning.first.is_visible()
    assert _visible_without_scrolling(page, "table tbody .badge.bg-warning")
    assert page.locator("table tbody .badge", has_text="quarantined").count() == 1
    assert page.locator("table tbody .fa-check, table tbody .fa-times").count() == 0  # no green tick, no red crosses
    arch_cells = page.locator(f"table tbody tr td:nth-child({headers.index('arch') + 1})").all_inner_texts()
    assert sorted(cell.strip() for cell in arch_cells) == ["fbnet k3_e6-k5_e1_…", "nb201 #0", "nb201 #1"]
    assert page.locator(f"table tbody span[title='{FBNET_ARCH}']").count() == 1  # the whole string on hover

    page.goto(f"{base}/admin/job/list")
    headers = [h.strip() for h in page.locator("table thead th").all_inner_texts()]
    for header in ("state", "device", "arch"):
        assert _visible_without_scrolling(page, f"table tbody tr td:nth-child({headers.index(header) + 1})"), header

    page.goto(f"{base}/admin/")  # dashboard charts: integer counts, the legend says what is plotted
    page.wait_for_selector("#chart-histogram[data-rendered]", state="attached", timeout=15_000)
    page.wait_for_selector("#chart-arch[data-rendered]", state="attached", timeout=15_000)
    assert page.evaluate("Chart.getChart('chart-histogram').options.scales.y.ticks.precision") == 0
    legend = page.evaluate("Chart.getChart('chart-arch').data.datasets[0].label")
    assert "latency_ms" in legend and "mean" in legend
    axis_min = page.evaluate("Chart.getChart('chart-arch').scales.x.min")
    smallest = page.evaluate("Math.min(...Chart.getChart('chart-arch').data.datasets[0].data)")
    assert smallest / 10 < axis_min <= smallest  # the log axis starts just below the data, not at 0.1

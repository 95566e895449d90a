"""/docs and /redoc render in a real headless Chromium with every non-local request refused (no network)."""

from __future__ import annotations

import pytest

from latfarm.services.core.config import Settings
from tests.api_support import app_on, serving
from tests.integration.test_admin_ui_browser import browser  # noqa: F401  (the shared Chromium fixture)


@pytest.fixture
def live_url(tmp_path):
    with app_on(Settings(data_dir=tmp_path)) as app, serving(app) as url:
        yield url


def offline_page(browser, base):  # noqa: F811
    """A 1400x1000 page that may load only from ``base``; returns it with the list of refused URLs."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    refused: list[str] = []

    def only_local(route):
        if route.request.url.startswith(base):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    return page, refused


@pytest.mark.browser
def test_swagger_ui_renders_operations_offline(browser, live_url):  # noqa: F811
    page, refused = offline_page(browser, live_url)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(f"{live_url}/docs")
    page.wait_for_selector(".opblock", timeout=15_000)
    operations = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/v1/predict" in [path.replace("\u200b", "") for path in operations]
    assert page.locator(".opblock-summary-path").first.is_visible()
    assert not refused and not errors, (refused, errors)


@pytest.mark.browser
def test_redoc_renders_operations_offline(browser, live_url):  # noqa: F811
    page, refused = offline_page(browser, live_url)
    page.goto(f"{live_url}/redoc")
    page.wait_for_selector("[data-section-id^='tag/']", timeout=15_000)
    assert "/v1/predict" in page.inner_text("body")
    assert not refused, refused

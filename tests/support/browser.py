"""Debian's Chromium, headless, driven by Playwright for Python (scripts/bootstrap.sh installs both;
never `playwright install`: its download is not reachable)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# As /work/shared/ENVIRONMENT.md measured them for this kind of machine.
FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
         "--disable-dev-shm-usage"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"


@contextlib.asynccontextmanager
async def chromium_page(**context_options) -> AsyncIterator:
    """A page in a fresh headless Chromium (closed on the way out); context options as Playwright takes them."""
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: scripts/bootstrap.sh installs it (apt-get install chromium)")
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            context = await browser.new_context(**context_options)
            page = await context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            await browser.close()


async def shot(page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

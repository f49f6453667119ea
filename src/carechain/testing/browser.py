"""Debian chromium through Playwright, for the browser tests (never ``playwright install``).

A missing chromium fails the test that needs it (not its setup) with a hint to run
``make browser-deps``. Needs the ``test`` extra (playwright).
"""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

CHROMIUM = os.environ.get("CARECHAIN_CHROMIUM", "/usr/bin/chromium")
"""The chromium binary (Debian's package by default)."""

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
"""Flags for a root sandbox on a closed network (no background connections)."""


class Chromium:
    """Debian chromium, launched on first use: a missing binary fails the test (not setup)."""

    def __init__(self) -> None:
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    def browser(self) -> Browser:
        """The running browser (launched now if needed)."""
        if self._browser is None:
            if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
                pytest.fail(
                    f"chromium not found at {CHROMIUM} (set CARECHAIN_CHROMIUM): "
                    "run `make browser-deps`",
                    pytrace=False,
                )
            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
        return self._browser

    def close(self) -> None:
        """Close the browser and Playwright."""
        if self._browser is not None:
            self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()

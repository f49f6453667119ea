"""A missing chromium fails a browser test with the fix, instead of skipping it silently."""

from __future__ import annotations

import pytest

import carechain.testing.browser as browser


def test_missing_chromium_fails_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(pytest.fail.Exception, match="make browser-deps"):
        browser.Chromium().browser()

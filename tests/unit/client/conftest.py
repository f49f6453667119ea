"""Fixtures of the SDK unit tests: a fake node holding five transactions."""

from __future__ import annotations

import pytest
from client_fakes import FakeApi


@pytest.fixture
def fake() -> FakeApi:
    """A fake node whose log holds five transactions."""
    api = FakeApi()
    api.append(5)
    return api

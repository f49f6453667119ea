"""Shared fixtures: a demo chain in a temporary directory and a running node on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from carechain.crypto.keystore import Keyring
from carechain.node.chaindir import DEMO_PASSWORD, InitResult, init_chain, open_node
from carechain.node.node import Node

FAST_SCRYPT_N = 2**10
"""Tests use a cheap scrypt cost; production keys use the keystore default."""


@pytest.fixture
def demo_chain(tmp_path: Path) -> InitResult:
    """A freshly initialised demo consortium (block 1 registers members and patients)."""
    return init_chain(tmp_path / "chain", demo=True, scrypt_n=FAST_SCRYPT_N)


@pytest.fixture
def demo_node(demo_chain: InitResult) -> Iterator[Node]:
    """A running node on ``demo_chain``; stopped and closed afterwards."""
    node = open_node(demo_chain.paths.root)
    try:
        yield node
    finally:
        node.stop()
        node.store.close()


@pytest.fixture
def demo_keys(demo_chain: InitResult) -> Keyring:
    """The demo keyring (password ``DEMO_PASSWORD``)."""
    return Keyring(demo_chain.paths.root, scrypt_n=FAST_SCRYPT_N)


@pytest.fixture(autouse=True)
def _no_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARECHAIN_PASSWORD", raising=False)
    monkeypatch.delenv("CARECHAIN_NODE_PASSWORD", raising=False)


__all__ = ["DEMO_PASSWORD", "FAST_SCRYPT_N", "os"]

"""Shared fixtures: a demo chain in a temporary directory and a running node on it."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from carechain.api.app import create_app
from carechain.crypto.keystore import Keyring
from carechain.node.chaindir import DEMO_PASSWORD, ChainPaths, InitResult, init_chain, open_node
from carechain.node.node import Node
from carechain.testing.browser import Chromium
from carechain.testing.chain_driver import FAST_SCRYPT_N, Chain


@pytest.fixture(scope="session")
def _demo_template(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    root = tmp_path_factory.mktemp("demo") / "chain"
    return init_chain(root, demo=True, scrypt_n=FAST_SCRYPT_N)


@pytest.fixture
def demo_chain(_demo_template: InitResult, tmp_path: Path) -> InitResult:
    """A private copy of a demo consortium initialised once per session (block 1 registers
    members and patients)."""
    root = tmp_path / "chain"
    shutil.copytree(_demo_template.paths.root, root)
    return dataclasses.replace(_demo_template, paths=ChainPaths(root))


@pytest.fixture(scope="session")
def _demo_domains_template(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    root = tmp_path_factory.mktemp("demo-domains") / "chain"
    return init_chain(root, demo=True, domains=True, scrypt_n=FAST_SCRYPT_N)


@pytest.fixture
def demo_chain_domains(_demo_domains_template: InitResult, tmp_path: Path) -> InitResult:
    """A private copy of the demo consortium with the domain demo data too (prescriber and
    pharmacy credentials, a payer plan and enrolments, supply partners and products, a research
    sponsor: ``seed_domain_demos``), as ``carechain init --demo`` makes it. A test module that
    needs it overrides ``demo_chain`` with it (``demo_node``, ``chain``, ``live_url`` follow)."""
    root = tmp_path / "chain"
    shutil.copytree(_demo_domains_template.paths.root, root)
    return dataclasses.replace(_demo_domains_template, paths=ChainPaths(root))


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


@pytest.fixture
def chain(demo_node: Node, demo_keys: Keyring) -> Chain:
    """A driver for real transactions on ``demo_node``."""
    return Chain(demo_node, demo_keys)


@pytest.fixture
def live_url(demo_node: Node, demo_chain: InitResult) -> Iterator[str]:
    """The API and explorer of ``demo_node`` served by uvicorn on a free 127.0.0.1 port."""
    app = create_app(demo_node, data_dir=demo_chain.paths.root)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    """Debian chromium for the browser tests of one module (launched on first use)."""
    c = Chromium()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(autouse=True)
def _no_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARECHAIN_PASSWORD", raising=False)
    monkeypatch.delenv("CARECHAIN_NODE_PASSWORD", raising=False)


__all__ = ["DEMO_PASSWORD", "FAST_SCRYPT_N", "os"]

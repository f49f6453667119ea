"""Test-cluster plumbing: ports handed out once, below the ephemeral range, and a node that
answers on our port checked to be ours."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from carechain.testing import cluster
from carechain.testing.cluster import NodeProcess, free_port


def test_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(20_000 <= p < 32_000 for p in ports)


class _Resp:
    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    def json(self) -> dict[str, Any]:
        return self._body


def test_a_node_of_another_chain_on_our_port_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "genesis.json").write_bytes(b'{"chain":"ours"}')
    node = NodeProcess(org="org-1", root=tmp_path, port=free_port())
    ours = hashlib.sha256(b'{"chain":"ours"}').hexdigest()
    answers = {"genesis_sha256": ours}
    monkeypatch.setattr(cluster.httpx, "get", lambda *a, **k: _Resp(answers))
    node._check_it_is_ours()  # the control: our genesis
    answers["genesis_sha256"] = hashlib.sha256(b"theirs").hexdigest()
    with pytest.raises(RuntimeError, match="another chain's node answers"):
        node._check_it_is_ours()

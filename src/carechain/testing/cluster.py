"""Local consortium clusters for development and tests.

* :class:`MemoryEtcd` / :class:`MemoryEtcdOrderer`: an in-process stand-in for the etcd
  stream (same ``kind``, same cosignature board), shared by several in-process nodes; a
  ``tamper`` hook lets a test feed one node an altered stream.
* :class:`EtcdCluster`: N ``etcd`` members on 127.0.0.1 (free ports, own data dirs).
* :class:`NodeProcess` / :class:`LocalCluster`: N ``carechain node`` processes on the
  directories of :func:`~carechain.node.consortium.init_consortium`.

Every process is started with its own process group and stopped by its PID (SIGTERM, then
SIGKILL); ``cluster.json`` in the base directory records the PIDs and ports for
``carechain consortium status|down``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from carechain.errors import UnavailableError
from carechain.node.chaindir import ChainPaths
from carechain.ordering.abc import OrderedBatch, Orderer
from carechain.ordering.etcd import EtcdOrderer

ETCD_BIN = os.environ.get("CARECHAIN_ETCD_BIN") or shutil.which("etcd") or "/usr/bin/etcd"


_PORTS = random.Random()  # noqa: S311 - spreading test ports, not a secret
_PORT_RANGE = (20_000, 32_000)
"""Below Linux's ephemeral range (32768-60999): a port handed out here is never taken in
the meantime by an outgoing connection, nor by another process's ``bind(0)``."""


_HANDED_OUT: set[int] = set()
"""Ports this process handed out: a cluster picks all its ports before binding any."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, outside the ephemeral range, and not handed
    out before by this process."""
    for _ in range(200):
        port = _PORTS.randrange(*_PORT_RANGE)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    with socket.socket() as s:  # that range is crowded: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (and is not a zombie of ours)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pid(pid: int, *, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Signal ``pid`` (only that process), wait, then SIGKILL it if still alive."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while pid_alive(pid) and time.monotonic() < deadline + 5:
        time.sleep(0.05)


# -- in-process double -------------------------------------------------------------------------


class MemoryEtcd:
    """A shared in-memory total order plus cosignature board (one per test cluster)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.batches: list[OrderedBatch] = []
        self.by_hash: dict[bytes, int] = {}
        self.cosigs: dict[int, dict[str, bytes]] = {}
        self.applied: dict[str, int] = {}
        self.revision = 0
        self.down = False
        """When True every call fails as a cluster without quorum would."""

    def check(self) -> None:
        if self.down:
            raise UnavailableError("memory etcd: no quorum", code="no_quorum", retry_after=2)


class MemoryEtcdOrderer(Orderer):
    """One node's view of a :class:`MemoryEtcd` (kind ``etcd``, content-addressed batches)."""

    kind = "etcd"

    def __init__(
        self,
        shared: MemoryEtcd,
        node: str,
        *,
        clock: Callable[[], int] | None = None,
        tamper: Callable[[OrderedBatch], OrderedBatch] | None = None,
    ) -> None:
        self.shared, self.node = shared, node
        self.clock = clock or (lambda: time.time_ns() // 1_000_000)
        self.tamper = tamper

    def submit(self, payload: bytes) -> int:
        import hashlib

        s = self.shared
        with s.cond:
            s.check()
            key = hashlib.sha256(payload).digest()
            if key in s.by_hash:  # create-only: the same batch is ordered once
                return s.by_hash[key]
            s.revision += 1
            s.batches.append(
                OrderedBatch(position=s.revision, timestamp=int(self.clock()), payload=payload)
            )
            s.by_hash[key] = s.revision
            s.cond.notify_all()
            return s.revision

    def read(self, after: int, *, limit: int = 64, timeout: float = 0.0) -> list[OrderedBatch]:
        s = self.shared
        deadline = time.monotonic() + timeout
        with s.cond:
            while True:
                s.check()
                out = [b for b in s.batches if b.position > after][:limit]
                remaining = deadline - time.monotonic()
                if out or remaining <= 0:
                    break
                s.cond.wait(remaining)
        return [self.tamper(b) for b in out] if self.tamper else out

    def forget(self, upto: int) -> None:
        with self.shared.cond:
            self.shared.applied[self.node] = upto

    def put_cosignature(self, height: int, note: bytes) -> None:
        with self.shared.cond:
            self.shared.check()
            self.shared.cosigs.setdefault(height, {})[self.node] = note

    def cosignatures(self, height: int) -> dict[str, bytes]:
        with self.shared.cond:
            self.shared.check()
            return dict(self.shared.cosigs.get(height, {}))


# -- etcd processes ------------------------------------------------------------------------


@dataclass(slots=True)
class EtcdMember:
    """One etcd member process."""

    name: str
    """Member name."""
    client_port: int
    """Client (gRPC + JSON gateway) port."""
    peer_port: int
    """Raft peer port."""
    data_dir: Path
    """Its data directory."""
    proc: subprocess.Popen[bytes] | None = None
    """The running process, if started by us."""
    pid: int = 0
    """Its PID (kept for ``down`` from another process)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


@dataclass(slots=True)
class EtcdCluster:
    """N etcd members on 127.0.0.1 (see the module docstring)."""

    base: Path
    """Directory holding each member's data dir and log."""
    size: int = 3
    """Number of members."""
    members: list[EtcdMember] = field(default_factory=list)
    """The members, once :meth:`start` ran."""

    @property
    def endpoints(self) -> list[str]:
        return [m.url for m in self.members]

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        """Start every member (fresh data dirs) and wait until the cluster has a leader."""
        if not Path(ETCD_BIN).exists():
            raise UnavailableError(
                f"etcd is not installed ({ETCD_BIN}); run `make etcd` "
                "(apt-get install etcd-server)",
                code="etcd_missing",
            )
        self.base.mkdir(parents=True, exist_ok=True)
        if not self.members:
            self.members = [
                EtcdMember(
                    name=f"etcd{i}",
                    client_port=free_port(),
                    peer_port=free_port(),
                    data_dir=self.base / f"etcd{i}",
                )
                for i in range(1, self.size + 1)
            ]
        for m in self.members:
            self.start_member(m)
        self.wait_ready(timeout)
        return self

    def start_member(self, m: EtcdMember) -> None:
        """(Re)start member ``m`` on its data dir (an existing one keeps its state)."""
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        log = open(self.base / f"{m.name}.log", "ab")  # noqa: SIM115 - handed to the child
        m.proc = subprocess.Popen(
            [
                ETCD_BIN,
                "--name",
                m.name,
                "--data-dir",
                str(m.data_dir),
                "--listen-client-urls",
                m.url,
                "--advertise-client-urls",
                m.url,
                "--listen-peer-urls",
                m.peer_url,
                "--initial-advertise-peer-urls",
                m.peer_url,
                "--initial-cluster",
                initial,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                f"carechain-{self.base.name}",
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
                "--log-level",
                "warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        m.pid = m.proc.pid

    def kill(self, m: EtcdMember, sig: int = signal.SIGKILL) -> None:
        """Kill member ``m`` by its PID (kill -9 by default)."""
        stop_pid(m.pid, sig=sig, timeout=5)
        if m.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                m.proc.wait(timeout=5)

    def leader(self) -> EtcdMember | None:
        """The current leader member (asked of every live member)."""
        for m in self.members:
            try:
                data = httpx.post(m.url + "/v3/maintenance/status", content=b"{}", timeout=1).json()
            except (httpx.HTTPError, ValueError):
                continue
            leader = data.get("leader")
            if leader and leader == data.get("header", {}).get("member_id"):
                return m
        return None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until a put through some member succeeds."""
        orderer = EtcdOrderer(self.endpoints, chain="probe", node="probe", timeout=1.0)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    orderer.call("/v3/kv/put", {"key": "cHJvYmU=", "value": ""}, timeout=1.0)
                    return
                except UnavailableError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            orderer.close()

    def stop(self) -> None:
        """Stop every member by PID."""
        for m in self.members:
            if m.pid:
                self.kill(m, signal.SIGTERM)


# -- carechain node processes --------------------------------------------------------------


@dataclass(slots=True)
class NodeProcess:
    """One ``carechain node`` process."""

    org: str
    """Organisation."""
    root: Path
    """Its data directory."""
    port: int
    """HTTP port."""
    proc: subprocess.Popen[bytes] | None = None
    """The running process, if started by us."""
    pid: int = 0
    """Its PID."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, endpoints: list[str]) -> None:
        """Start the node (``CARECHAIN_ETCD`` overrides node.json's endpoints)."""
        env = {**os.environ, "CARECHAIN_ETCD": ",".join(endpoints)}
        log = open(self.root / "node.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from carechain.cli.main import app; app()",
                "node",
                "--dir",
                str(self.root),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until ``/healthz`` answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = (self.root / "node.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"node {self.org} exited ({self.proc.returncode}): {tail}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code in (200, 503):
                    self._check_it_is_ours()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"node {self.org} did not answer on {self.url}")

    def _check_it_is_ours(self) -> None:
        """The server on our port serves our chain (not another test's node that took the
        port: ours would then have failed to bind, and every later check would ask theirs)."""
        want = hashlib.sha256(ChainPaths(self.root).genesis.read_bytes()).hexdigest()
        got = httpx.get(self.url + "/v1/chain", timeout=5).json().get("genesis_sha256")
        if got != want:
            raise RuntimeError(
                f"node {self.org}: another chain's node answers on {self.url} "
                f"(genesis {got}, want {want})"
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the node by its PID (kill -9 by default)."""
        stop_pid(self.pid, sig=sig, timeout=10)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)


@dataclass(slots=True)
class LocalCluster:
    """etcd members + carechain nodes over the directories of ``init_consortium``."""

    base: Path
    """Base directory (holds genesis.json, admin/, one directory per organisation)."""
    etcd: EtcdCluster
    """The etcd members."""
    nodes: list[NodeProcess] = field(default_factory=list)
    """The carechain nodes."""

    @classmethod
    def create(
        cls,
        base: Path,
        *,
        orgs: int = 3,
        params: dict[str, int] | None = None,
        scrypt_n: int | None = None,
    ) -> LocalCluster:
        """Initialise ``orgs`` node directories (nothing started)."""
        from carechain.node.consortium import init_consortium

        etcd = EtcdCluster(base / "etcd", size=orgs)
        _, members = init_consortium(base, orgs=orgs, params=params, scrypt_n=scrypt_n)
        nodes = [NodeProcess(org=m.org, root=m.root, port=free_port()) for m in members]
        for n in nodes:  # peers to catch up from when etcd history was compacted
            config = ChainPaths(n.root).config
            doc = orjson.loads(config.read_bytes())
            doc["peers"] = [p.url for p in nodes if p is not n]
            config.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        cluster = cls(base=base, etcd=etcd, nodes=nodes)
        cluster.save()
        return cluster

    @classmethod
    def load(cls, base: Path) -> LocalCluster:
        """The cluster recorded in ``base/cluster.json`` (same ports and directories)."""
        doc = read_cluster(base)
        etcd = EtcdCluster(base / "etcd", size=len(doc["etcd"]))
        etcd.members = [
            EtcdMember(
                name=m["name"],
                client_port=int(m["url"].rsplit(":", 1)[1]),
                peer_port=int(m["peer"].rsplit(":", 1)[1]),
                data_dir=base / "etcd" / m["name"],
                pid=int(m.get("pid", 0)),
            )
            for m in doc["etcd"]
        ]
        nodes = [
            NodeProcess(
                org=n["org"],
                root=Path(n["dir"]),
                port=int(n["url"].rsplit(":", 1)[1]),
                pid=int(n.get("pid", 0)),
            )
            for n in doc["nodes"]
        ]
        return cls(base=base, etcd=etcd, nodes=nodes)

    def start(self) -> LocalCluster:
        """Start etcd, then every node; wait until all answer; write ``cluster.json``."""
        self.etcd.start()
        self.save()
        for n in self.nodes:
            n.start(self.etcd.endpoints)
        for n in self.nodes:
            n.wait_ready()
        self.save()
        return self

    def save(self) -> None:
        """Record PIDs and ports in ``base/cluster.json``."""
        doc = {
            "etcd": [
                {"name": m.name, "pid": m.pid, "url": m.url, "peer": m.peer_url}
                for m in self.etcd.members
            ],
            "nodes": [
                {"org": n.org, "pid": n.pid, "url": n.url, "dir": str(n.root)} for n in self.nodes
            ],
        }
        (self.base / "cluster.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))

    def stop(self) -> None:
        """Stop every node, then every etcd member, by PID."""
        for n in self.nodes:
            if n.pid:
                n.kill(signal.SIGTERM)
        self.etcd.stop()


# -- benchmark -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchResult:
    """Committed throughput and commit latency of one run."""

    label: str
    """What ran (``private 1 node`` / ``consortium 3 nodes``)."""
    txs: int
    """Transactions acknowledged as committed."""
    seconds: float
    """Wall time of the run."""
    p50_ms: float
    """Median submit-to-commit latency."""
    p99_ms: float
    """99th percentile latency."""

    @property
    def tps(self) -> float:
        return self.txs / self.seconds if self.seconds else 0.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def drive(label: str, urls: list[str], batches: list[list[bytes]], clients: int) -> BenchResult:
    """Submit ``batches[i]`` through ``urls[i % len(urls)]``, one tx per request, from
    ``clients`` threads per URL, each waiting for the commit; measure."""
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(url: str, raws: list[bytes]) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for raw in raws:
                t0 = time.perf_counter()
                resp = http.post(
                    "/v1/transactions", content=raw, headers={"content-type": "application/json"}
                )
                if resp.status_code == 200:
                    with lock:
                        latencies.append(time.perf_counter() - t0)

    threads = []
    for i, raws in enumerate(batches):
        url = urls[i % len(urls)]
        threads += [
            threading.Thread(target=worker, args=(url, raws[k::clients])) for k in range(clients)
        ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return BenchResult(
        label=label,
        txs=len(latencies),
        seconds=elapsed,
        p50_ms=_percentile(latencies, 0.50) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
    )


def member_txs(base: Path, chain: str, orgs: list[str], n: int) -> list[list[bytes]]:
    """``n`` signed member registrations per organisation, by its admin (keys in base/admin)."""
    from carechain.crypto.keystore import Keyring
    from carechain.crypto.signatures import generate_key
    from carechain.encoding import JsonObject, b64u_encode
    from carechain.ledger.tx import make_tx
    from carechain.node.chaindir import DEMO_PASSWORD

    ring = Keyring(base / "admin")
    out = []
    for org in orgs:
        admin = ring.load(f"{org}-admin", DEMO_PASSWORD)
        raws = []
        for i in range(n):
            key = generate_key()
            args: JsonObject = {
                "account": f"{org}.bench-{i}",
                "org": org,
                "role": "practitioner",
                "keys": [{"alg": key.alg, "pub": b64u_encode(key.public)}],
            }
            raws.append(
                make_tx(
                    chain=chain,
                    kind="identity.register_member@1",
                    sender=f"{org}.admin",
                    args=args,
                    keys=[admin],
                    created=time.time_ns() // 1_000_000,
                    nonce=os.urandom(16),
                ).raw
            )
        out.append(raws)
    return out


def benchmark(base: Path, *, orgs: int = 3, txs: int = 1500, clients: int = 4) -> list[BenchResult]:
    """A private single node, then an ``orgs``-node consortium on etcd, same workload shape
    (``txs`` member registrations in total, ``clients`` waiting clients per node)."""
    from carechain.node.chaindir import read_genesis as _read_genesis

    results = []
    solo_base = base / "private"
    solo = LocalCluster.create(solo_base, orgs=1, scrypt_n=2**10)
    node = solo.nodes[0]
    ChainPaths(node.root).config.write_bytes(b'{"node_key": "node"}')  # private: solo ordering
    chain = _read_genesis(node.root).chain
    work = member_txs(solo_base, chain, [node.org], txs)
    node.start([])
    try:
        node.wait_ready()
        results.append(drive("private, 1 node (solo)", [node.url], work, clients * orgs))
    finally:
        node.kill(signal.SIGTERM)
    cluster = LocalCluster.create(base / "consortium", orgs=orgs, scrypt_n=2**10)
    chain = _read_genesis(cluster.nodes[0].root).chain
    work = member_txs(base / "consortium", chain, [n.org for n in cluster.nodes], txs // orgs)
    try:
        cluster.start()
        results.append(
            drive(f"consortium, {orgs} nodes (etcd)", [n.url for n in cluster.nodes], work, clients)
        )
    finally:
        cluster.stop()
    return results


def read_cluster(base: Path) -> dict[str, Any]:
    """``base/cluster.json`` as written by :meth:`LocalCluster.save`."""
    path = base / "cluster.json"
    if not path.exists():
        return {"etcd": [], "nodes": []}
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


def down(base: Path) -> list[int]:
    """Stop every process recorded in ``base/cluster.json`` by PID; returns the PIDs."""
    doc = read_cluster(base)
    pids = [int(p["pid"]) for p in (*doc["nodes"], *doc["etcd"]) if p.get("pid")]
    for pid in pids:
        if pid_alive(pid):
            stop_pid(pid)
    return pids


__all__ = [
    "BenchResult",
    "EtcdCluster",
    "EtcdMember",
    "LocalCluster",
    "MemoryEtcd",
    "MemoryEtcdOrderer",
    "NodeProcess",
    "benchmark",
    "down",
    "free_port",
    "read_cluster",
    "stop_pid",
]

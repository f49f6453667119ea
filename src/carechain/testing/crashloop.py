"""Crash loop: SIGKILL a real node at every failpoint and at random moments, then check.

One *life* of the node: a child process forked from the harness (which has already imported
everything and decrypted the demo keys, so a crash costs milliseconds) opens the node on a real
SQLite data directory (``open_node``: WAL recovery included), reports ``R <ms>``
(restart-to-ready) on a pipe, and runs a concurrent mixed workload in three lanes:

* identity: register a fresh patient, rotate its key (``identity.rotate_key@1``, old + new
  key), grant a consent signed by the *new* key, again and again;
* records: ``records.anchor@1`` by dr-kim for patient-1 (1 to 3 per batch);
* consent and membership: ``consent.grant@1`` by patient-1, ``identity.register_member@1`` by
  the seoul-general admin.

A line ``A <kind> <tx id hex> [<new kid>]`` is written to the pipe after each future resolved
(the acknowledgement); a pipe write below PIPE_BUF is atomic and the kernel keeps it when the
writer dies, so every line the harness reads is an acknowledgement that happened. The life ends
by SIGKILL: from an armed failpoint (``<point>=kill@N``, every point of
:data:`carechain.failpoints.POINTS` in turn) or from the harness (``os.kill`` after a random
delay). After every crash :func:`check_ledger` reopens the directory and checks:

1. ``PRAGMA integrity_check`` is ``ok``;
2. every acknowledged transaction of every life so far is in the ledger (``find_tx``);
3. no partial block: the head block holds ``header.txs`` envelopes and receipts, the log size
   is the head's, and the stored Merkle nodes give the head's log root;
4. ``verify_store`` (``carechain verify``) recomputes the whole chain;
5. every acknowledged key rotation has an ``ok`` receipt and left its new key active (the
   lane's next transaction is signed with it).

Every ``epoch`` crashes the harness starts over from a fresh copy of the template chain, so
verification stays cheap however many crashes run. :func:`run_http_crashes` does the same
against the real ``carechain node`` HTTP server process (ack = HTTP 200 from
``POST /v1/transactions``), killed through ``CARECHAIN_FAILPOINTS`` or by the harness.

Negative controls: ``ack_early`` makes the child a broken build that resolves the futures of
a block before storing it (then dies before the commit): :func:`check_ledger` must report the
lost acknowledgements; a corrupted file must fail integrity or verification.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import shutil
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import orjson

from carechain import failpoints
from carechain.contracts.identity import patient_account_id
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.errors import LedgerError
from carechain.ledger.block import parse_header
from carechain.ledger.genesis import Genesis
from carechain.ledger.keys import key_state_key
from carechain.ledger.tx import SignedTx
from carechain.merkle import root_at
from carechain.node.chaindir import DEMO_PASSWORD, ChainPaths, new_tx, open_node, read_genesis
from carechain.node.node import Node, now_ms
from carechain.node.sigpool import SignatureVerifier
from carechain.node.verify import verify_store
from carechain.storage.sqlite import SQLiteStore
from carechain.testing.chain_driver import MEMBERS, fake_digest, pub, read_grant_args

KEY_NAMES = ("seoul-general-admin", "dr-kim", "patient-1")
"""Demo keys the workload signs with (decrypted once, in the harness)."""
RANDOM = "random"
"""Name under which harness kills at random moments are counted."""
LIFE_TIMEOUT_S = 8.0
"""A life whose failpoint has not fired by then is killed by the harness (counted apart)."""


@dataclass(frozen=True, slots=True)
class Ack:
    """One acknowledged transaction, as the child reported it."""

    tx_id: bytes
    """Its id."""
    kind: str
    """Its kind."""
    new_kid: str = ""
    """For a key rotation: the new key's id."""


@dataclass(slots=True)
class CrashReport:
    """What a crash loop did and found."""

    crashes: int = 0
    """Lives ended by SIGKILL and checked."""
    by_point: Counter[str] = field(default_factory=Counter)
    """Crashes per failpoint (``random`` = harness kills; ``unfired:<point>`` = killed by the
    harness because the point was not reached in time)."""
    acked: int = 0
    """Distinct acknowledged transactions."""
    acked_checks: int = 0
    """Acknowledged transactions looked up, summed over every check."""
    rotations: int = 0
    """Acknowledged key rotations among them."""
    restart_ms: list[float] = field(default_factory=list)
    """Restart-to-ready of every life (fork to ``open_node`` returned, WAL recovery included)."""
    violations: list[str] = field(default_factory=list)
    """Everything a check found (empty: all good)."""

    def percentile(self, q: float) -> float:
        """Restart-to-ready percentile ``q`` (0-100) in ms."""
        if not self.restart_ms:
            return 0.0
        ordered = sorted(self.restart_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    def summary(self) -> str:
        """A few lines for ``pytest -s`` and ``make soak``."""
        points = ", ".join(f"{k} {v}" for k, v in sorted(self.by_point.items()))
        median = statistics.median(self.restart_ms) if self.restart_ms else 0.0
        return (
            f"crashes {self.crashes} ({points})\n"
            f"acknowledged txs {self.acked} ({self.rotations} key rotations), "
            f"{self.acked_checks} look-ups after crashes, violations {len(self.violations)}\n"
            f"restart-to-ready p50 {median:.1f} ms, p99 {self.percentile(99):.1f} ms"
        )


# -- the workload ----------------------------------------------------------------------------


class Workload:
    """Builds the transactions of the three lanes (module docstring) for chain ``chain``."""

    def __init__(self, chain: str, keys: dict[str, PrivateKey], seed: int) -> None:
        self.chain = chain
        self.keys = keys
        self.rng = random.Random(seed)  # noqa: S311 - a workload mix, not a secret
        self.tag = f"{os.getpid()}-{seed}"
        self._n = 0
        self._lock = threading.Lock()

    def _next(self) -> int:
        with self._lock:
            self._n += 1
            return self._n

    def tx(self, kind: str, sender: str, args: dict[str, Any], keys: list[PrivateKey]) -> SignedTx:
        """A fresh transaction (current time, random nonce)."""
        return new_tx(self.chain, kind, sender, args, keys)

    def anchor(self) -> SignedTx:
        """``records.anchor@1`` by dr-kim for patient-1, a new record id each time."""
        rid = f"crash-{self.tag}-{self._next()}"
        patient = patient_account_id(self.keys["patient-1"].kid)
        args = {
            "digest": fake_digest("seoul-general", "Observation", rid, 1),
            "id": rid,
            "index": fake_digest("index", patient, "", 0),
            "org": "seoul-general",
            "patient": patient,
            "type": "Observation",
            "url": f"https://seoul-general.example/fhir/Observation/{rid}/_history/1",
            "version": 1,
        }
        return self.tx("records.anchor@1", MEMBERS["dr-kim"], args, [self.keys["dr-kim"]])

    def grant(self, owner: PrivateKey | None = None, key: PrivateKey | None = None) -> SignedTx:
        """``consent.grant@1`` to dr-kim by patient-1, or by the patient registered with key
        ``owner`` (its account id) signing with ``key`` (default: ``owner``)."""
        owner = owner or self.keys["patient-1"]
        args = read_grant_args(now_ms())
        return self.tx("consent.grant@1", patient_account_id(owner.kid), args, [key or owner])

    def member(self) -> SignedTx:
        """``identity.register_member@1`` of a new practitioner by the seoul-general admin."""
        key = generate_key("ed25519")
        account = f"seoul-general.crash-{self.tag}-{self._next()}"
        args = {"account": account, "keys": [pub(key)], "org": "seoul-general",
                "role": "practitioner"}  # fmt: skip
        return self.tx(
            "identity.register_member@1",
            "seoul-general.admin",
            args,
            [self.keys["seoul-general-admin"]],
        )

    def register_patient(self, key: PrivateKey) -> SignedTx:
        """``identity.register_patient@1`` of the patient owning ``key``."""
        return self.tx(
            "identity.register_patient@1",
            patient_account_id(key.kid),
            {"keys": [pub(key)]},
            [key],
        )

    def rotate(self, owner: PrivateKey, old: PrivateKey, new: PrivateKey) -> SignedTx:
        """``identity.rotate_key@1``: ``old`` hands over to ``new`` (signed by both)."""
        return self.tx(
            "identity.rotate_key@1",
            patient_account_id(owner.kid),
            {"keys": [pub(new)], "old": old.kid},
            [old, new],
        )


Submit = Callable[[list[SignedTx]], bool]
"""Submits a batch and waits: True once acknowledged (all committed)."""
Record = Callable[[SignedTx, str], None]
"""Records one acknowledged transaction (and a rotation's new key id)."""


def run_lane(
    lane: int, work: Workload, submit: Submit, record: Record, stop: threading.Event
) -> None:
    """Run one lane until ``stop`` or the first failed submission."""
    while not stop.is_set():
        if lane == 0:  # identity: register, rotate, use the new key
            first = generate_key("ed25519")
            if not _send(submit, record, [work.register_patient(first)]):
                return
            new = generate_key("ed25519")
            rotation = work.rotate(first, first, new)
            if not submit([rotation]):
                return
            record(rotation, new.kid)
            if not _send(submit, record, [work.grant(first, new)]):
                return
        elif lane == 1:
            if not _send(submit, record, [work.anchor() for _ in range(work.rng.randint(1, 3))]):
                return
        else:
            batch = [work.grant()] if work.rng.random() < 0.5 else [work.member()]
            if not _send(submit, record, batch):
                return


def _send(submit: Submit, record: Record, txs: list[SignedTx]) -> bool:
    if not submit(txs):
        return False
    for tx in txs:
        record(tx, "")
    return True


LANES = 3


# -- one life of the node (the child) --------------------------------------------------------


def _child(
    root: Path, fd: int, spec: str, keys: dict[str, PrivateKey], t_fork: float, seed: int,
    ack_early: bool,
) -> NoReturn:  # fmt: skip
    """The forked child: open the node, report ready, run the lanes until killed."""
    code = 0
    try:
        failpoints.disarm_all()
        if spec:
            failpoints.arm_from_spec(spec)
        node = open_node(root, verifier=SignatureVerifier(workers=1))
        ready_ms = (time.monotonic() - t_fork) * 1000
        os.write(fd, f"R {ready_ms:.3f}\n".encode())
        if ack_early:
            failpoints.arm("node.commit.before_store", _acknowledge_early(node))
        lock = threading.Lock()

        def submit(txs: list[SignedTx]) -> bool:
            try:
                node.submit_and_wait([t.raw for t in txs], timeout=LIFE_TIMEOUT_S)
            except (LedgerError, TimeoutError):
                return False
            return True

        def record(tx: SignedTx, new_kid: str) -> None:
            line = f"A {tx.body.kind} {tx.tx_id.hex()} {new_kid}\n".encode()
            with lock:
                os.write(fd, line)

        stop = threading.Event()
        work = Workload(node.genesis.chain, keys, seed)
        threads = [
            threading.Thread(target=run_lane, args=(lane, work, submit, record, stop), daemon=True)
            for lane in range(LANES)
        ]
        for t in threads:
            t.start()
        stop.wait(LIFE_TIMEOUT_S * 2)  # the harness kills the child long before
    except BaseException as exc:  # reported; the harness counts a life without SIGKILL
        with contextlib.suppress(OSError):
            os.write(fd, f"E {type(exc).__name__}: {exc}\n".encode()[:512])
        code = 1
    finally:
        os._exit(code)


def _acknowledge_early(node: Node) -> Callable[[], None]:
    """The broken build of the negative control: resolve every pending future before the
    block is stored, give the lanes a moment to report, then die before the commit."""

    def fire() -> None:
        with node._lock:
            pending = list(node._inflight.values())
        for p in pending:
            if not p.future.done():
                p.future.set_result((0, 0))
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)

    return fire


# -- checks ----------------------------------------------------------------------------------


def check_ledger(root: Path, genesis: Genesis, acked: Sequence[Ack]) -> list[str]:
    """Steps 1-5 of the module docstring on the data directory ``root``; the violations."""
    out: list[str] = []
    try:
        store = SQLiteStore(ChainPaths(root).ledger)
    except LedgerError as exc:
        return [f"the store does not open: {exc}"]
    try:
        try:
            integrity = store.integrity_check()  # step 1
        except LedgerError as exc:
            integrity = str(exc)
        if integrity != "ok":
            out.append(f"integrity_check: {integrity[:200]}")
        for ack in acked:  # step 2
            if store.find_tx(ack.tx_id) is None:
                out.append(f"acknowledged {ack.kind} {ack.tx_id.hex()} is not in the ledger")
        out.extend(_check_head(store))  # step 3
        try:
            verify_store(store, genesis, verifier=SignatureVerifier(workers=1))  # step 4
        except LedgerError as exc:
            out.append(f"verify: {exc}")
        for ack in acked:  # step 5
            if ack.new_kid:
                raw = store.find_state(key_state_key(ack.new_kid))
                status = orjson.loads(raw).get("status", "active") if raw else None
                if status != "active":
                    out.append(f"rotated key {ack.new_kid}: state {status!r}, want 'active'")
                loc = store.find_tx(ack.tx_id)
                receipt = store.find_receipt(loc.log_index) if loc is not None else None
                if receipt is None or orjson.loads(receipt)["status"] != "ok":
                    out.append(f"acknowledged rotation {ack.tx_id.hex()} has no 'ok' receipt")
    except Exception as exc:  # a corrupt file can fail anywhere: that is a finding too
        out.append(f"check failed: {type(exc).__name__}: {exc}")
    finally:
        store.close()
    return out


def _check_head(store: SQLiteStore) -> list[str]:
    head = store.head_height()
    if head is None:
        return ["no block at all"]
    block = store.find_block(head)
    if block is None or head == 0:
        return [] if block is not None else [f"head block {head} unreadable"]
    header = parse_header(block.header)
    out = []
    if not len(block.envelopes) == len(block.receipts) == header.txs:
        out.append(
            f"partial block {head}: {len(block.envelopes)} envelopes, {len(block.receipts)} "
            f"receipts, header says {header.txs}"
        )
    if store.log_size() != header.log_size:
        out.append(f"log size {store.log_size()}, head block {head} says {header.log_size}")
    try:
        if root_at(store, header.log_size) != header.log_root:
            out.append(f"stored Merkle nodes do not give block {head}'s log root")
    except LedgerError as exc:
        out.append(f"Merkle nodes missing for log size {header.log_size}: {exc}")
    return out


# -- the harness -----------------------------------------------------------------------------


def load_keys(root: Path) -> dict[str, PrivateKey]:
    """Decrypt the demo keys the workload signs with (once, before any fork)."""
    ring = Keyring(root)
    return {name: ring.load(name, DEMO_PASSWORD) for name in KEY_NAMES}


def _parse_lines(buf: bytes, acked: dict[bytes, Ack], report: CrashReport) -> bytes:
    *lines, rest = buf.split(b"\n")
    for line in lines:
        parts = line.decode().split(" ")
        if parts[0] == "R":
            report.restart_ms.append(float(parts[1]))
        elif parts[0] == "A":
            ack = Ack(bytes.fromhex(parts[2]), parts[1], parts[3] if len(parts) > 3 else "")
            acked.setdefault(ack.tx_id, ack)
        elif parts[0] == "E":
            report.violations.append(f"child failed: {line.decode()[2:]}")
    return rest


def run_life(
    root: Path, keys: dict[str, PrivateKey], *, spec: str = "", kill_after: float | None = None,
    seed: int = 0, ack_early: bool = False, report: CrashReport, acked: dict[bytes, Ack],
) -> str:  # fmt: skip
    """Fork one life; end it by its failpoint (``spec``) or by SIGKILL ``kill_after`` s after
    it is ready. Returns how it ended: ``failpoint``, ``harness``, ``timeout``, ``exit <n>``."""
    r, w = os.pipe()
    t_fork = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns (covered by its reports)
        os.close(r)
        _child(root, w, spec, keys, t_fork, seed, ack_early)
    os.close(w)
    buf = b""
    ready_at: float | None = None
    killed_by_harness = False
    deadline = t_fork + LIFE_TIMEOUT_S
    try:
        while True:
            ready, _, _ = select.select([r], [], [], 0.01)
            if ready:
                chunk = os.read(r, 65536)
                if not chunk:
                    break  # EOF: the child is gone
                if ready_at is None and chunk.startswith(b"R "):
                    ready_at = time.monotonic()
                buf = _parse_lines(buf + chunk, acked, report)
            now = time.monotonic()
            due = kill_after is not None and ready_at is not None and now >= ready_at + kill_after
            if (due or now >= deadline) and not killed_by_harness:
                killed_by_harness = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    finally:
        os.close(r)
        with contextlib.suppress(ProcessLookupError):  # dead already, unless we are failing
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    _parse_lines(buf + b"\n", acked, report)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        if not killed_by_harness:
            return "failpoint"
        return "harness" if kill_after is not None else "timeout"
    return f"exit {os.waitstatus_to_exitcode(status)}"


def run_crash_loop(
    template: Path, work: Path, crashes: int, *, seed: int = 1, epoch: int = 25,
    points: Sequence[str] = failpoints.POINTS, random_every: int = 3,
    out: Callable[[str], None] | None = None,
) -> CrashReport:  # fmt: skip
    """``crashes`` lives on copies of the chain in ``template`` (a fresh copy every ``epoch``);
    every ``random_every``-th is killed by the harness at a random moment, the others by the
    next failpoint of ``points`` (``kill@N``, N in 1..3). Checks after every crash."""
    rng = random.Random(seed)  # noqa: S311 - reproducible kill schedule, not a secret
    keys = load_keys(template)
    genesis = read_genesis(template)
    report = CrashReport()
    acked: dict[bytes, Ack] = {}
    root = work / "chain"
    next_point = 0
    for i in range(crashes):
        if i % epoch == 0:
            tally(report, acked)
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(template, root)
            acked = {}
        if i % random_every == random_every - 1:
            how = run_life(root, keys, kill_after=rng.uniform(0.0, 0.25), seed=rng.getrandbits(32),
                           report=report, acked=acked)  # fmt: skip
            label = RANDOM
        else:
            point = points[next_point % len(points)]
            next_point += 1
            spec = f"{point}=kill@{rng.randint(1, 3)}"
            how = run_life(root, keys, spec=spec, seed=rng.getrandbits(32), report=report,
                           acked=acked)  # fmt: skip
            label = point if how == "failpoint" else f"unfired:{point}"
        if how not in ("failpoint", "harness", "timeout"):
            report.violations.append(f"life {i} ({label}) ended with {how}, not SIGKILL")
        report.crashes += 1
        report.by_point[label] += 1
        found = check_ledger(root, genesis, list(acked.values()))
        report.acked_checks += len(acked)
        report.violations.extend(f"crash {i} ({label}): {v}" for v in found)
        if out is not None and (i + 1) % 50 == 0:
            out(f"  {i + 1} crashes, {len(report.violations)} violations")
    tally(report, acked)
    return report


def tally(report: CrashReport, acked: dict[bytes, Ack]) -> None:
    """Count the acknowledgements of an epoch that ends (each tx is in one epoch only)."""
    report.acked += len(acked)
    report.rotations += sum(1 for a in acked.values() if a.kind == "identity.rotate_key@1")


def genesis_chain(root: Path) -> str:
    """The chain id of the chain in ``root``."""
    return read_genesis(root).chain


# -- entry point: ``python -m carechain.testing.crashloop [crashes] [http crashes]`` -----------


def main(argv: Sequence[str]) -> int:
    """Build a demo chain in a temporary directory and run both loops; print the summaries."""
    import tempfile

    from carechain.node.chaindir import init_chain
    from carechain.testing.chain_driver import FAST_SCRYPT_N

    crashes = int(argv[0]) if argv else 200
    http = int(argv[1]) if len(argv) > 1 else 5
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        init_chain(template, demo=True, scrypt_n=FAST_SCRYPT_N)
        loop = run_crash_loop(template, Path(tmp), crashes, out=print)
        print(loop.summary())
        from carechain.testing.crashloop_http import run_http_crashes

        served = run_http_crashes(template, Path(tmp), http)
        print("http:", served.summary())
        for v in [*loop.violations, *served.violations]:
            print("VIOLATION", v)
        return 1 if loop.violations or served.violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

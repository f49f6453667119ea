"""Races and replays: what concurrency and repetition must never buy an attacker.

* a replayed transaction is refused also after a restart, verbatim or re-signed, through the
  HTTP API (``test_attacks.py::test_replay_across_a_restart`` does the same on the node);
* consent revocation racing reads: reader threads decide exactly as the record service does
  (head snapshot, then ``consent.decide`` on the committed state) while the revocation
  commits; no read is ever permitted at a height at or after the revocation's block;
* break-glass is refused to every role without the ``emergency`` capability;
* a revoked key's new transactions are refused while its earlier ones still verify and prove;
* block time never decreases, even when the node's clock goes backwards.

100 concurrent dispenses of one prescription giving exactly the prescribed quantity:
``tests/integration/test_rx_api.py`` (concurrent dispensing test).
``CARECHAIN_RACE_ROUNDS`` (``make soak``) raises the number of revocation races.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carechain.api.app import create_app
from carechain.contracts.consent import AccessRequest, Decision, RecordRef, decide
from carechain.contracts.identity import patient_account_id
from carechain.crypto.signatures import generate_key
from carechain.errors import LedgerError
from carechain.ledger.block import parse_header, sign_header
from carechain.ledger.tx import make_tx
from carechain.ledger.verify import verify_chain
from carechain.node.chaindir import InitResult, load_node_key, open_node
from carechain.node.node import Node, now_ms
from carechain.node.records.service import _State
from carechain.testing.chain_driver import MEMBERS, Chain, pub

ROUNDS = int(os.environ.get("CARECHAIN_RACE_ROUNDS") or 5)
READERS = 4


# -- replay after a restart, through the API -------------------------------------------------


def test_replay_through_the_api_after_a_restart(demo_chain: InitResult, chain: Chain) -> None:
    ml = generate_key("ml-dsa-65")  # randomised signatures: re-signing gives new bytes
    fields: dict[str, Any] = dict(
        chain=chain.node.genesis.chain, kind="identity.register_patient@1",
        sender=patient_account_id(ml.kid), args={"keys": [pub(ml)]}, keys=[ml],
        created=now_ms(), nonce=os.urandom(16),
    )  # fmt: skip
    original = make_tx(**fields)
    assert chain.run1(original).ok
    chain.node.stop()
    chain.node.store.close()
    node = open_node(demo_chain.paths.root)
    try:
        resigned = make_tx(**fields)
        assert resigned.raw != original.raw and resigned.tx_id == original.tx_id
        size = node.store.log_size()
        with TestClient(create_app(node, data_dir=demo_chain.paths.root)) as http:
            for raw in (original.raw, resigned.raw):
                resp = http.post("/v1/transactions", content=raw,
                                 headers={"content-type": "application/json"})  # fmt: skip
                assert resp.status_code == 409, resp.text
                assert resp.json()["code"] == "duplicate_transaction"
        assert node.store.log_size() == size
    finally:
        node.stop()
        node.store.close()


# -- consent revocation racing reads ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Read:
    height: int
    """The head height the decision was taken at."""
    decision: Decision


def _service_decide(node: Node, request: AccessRequest) -> Read:
    """Exactly the record service's ``_decide``: snapshot the head, decide on the state."""
    head = node.head.header
    d = decide(_State(node), request, time=max(head.time, node.clock()), height=head.height)
    return Read(head.height, d)


def violations(reads: list[Read], revoked_at: int) -> list[Read]:
    """Reads permitted at or after the revocation's height (the property checked)."""
    return [r for r in reads if r.decision.permit and r.height >= revoked_at]


def _race(
    chain: Chain,
    request: AccessRequest,
    consent: str,
    decider: Callable[[Node, AccessRequest], Read],
) -> tuple[list[Read], int]:
    reads: list[Read] = []
    lock = threading.Lock()
    start = threading.Barrier(READERS + 1)
    revoked_at: list[int] = []
    after = threading.Event()

    def reader() -> None:
        start.wait()
        seen_after = 0
        while seen_after < 25:
            r = decider(chain.node, request)
            with lock:
                reads.append(r)
            if revoked_at and r.height >= revoked_at[0]:
                seen_after += 1
            if after.is_set() and not revoked_at:  # pragma: no cover - defensive
                break

    threads = [threading.Thread(target=reader) for _ in range(READERS)]
    for t in threads:
        t.start()
    start.wait()
    out = chain.run1(chain.revoke(consent))
    assert out.ok, out.receipt
    revoked_at.append(out.height)
    after.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return reads, out.height


@pytest.fixture
def raced(chain: Chain) -> tuple[Chain, AccessRequest]:
    assert chain.run1(chain.anchor("dr-kim")).ok  # dr-kim's record of patient-1
    request = AccessRequest(
        actor=MEMBERS["nurse-park"], actor_org="seoul-general", actor_role="nurse",
        patient=chain.account("patient-1"), action="read",
        record=RecordRef(org="seoul-general", type="Observation", id="obs-1"),
        resource_type="Observation", purpose="TREAT",
    )  # fmt: skip
    return chain, request


def test_revocation_racing_reads_never_permits_after_it(raced: tuple[Chain, AccessRequest]) -> None:
    chain, request = raced
    totals = {"reads": 0, "permits_before": 0, "denied_after": 0}
    for _ in range(ROUNDS):
        grant = chain.run1(chain.grant(grantee={"account": MEMBERS["nurse-park"]}))
        assert grant.ok
        consent = grant.tx.tx_id.hex()[:16]
        assert _service_decide(chain.node, request).decision.permit  # control: permitted
        reads, revoked_at = _race(chain, request, consent, _service_decide)
        assert not violations(reads, revoked_at)
        after = [r for r in reads if r.height >= revoked_at]
        assert after and all(r.decision.reason == "revoked" for r in after)
        totals["reads"] += len(reads)
        totals["permits_before"] += sum(r.decision.permit for r in reads)
        totals["denied_after"] += len(after)
    print(f"RACE revocation rounds={ROUNDS} {totals}")


def test_the_race_checker_catches_a_stale_decider(raced: tuple[Chain, AccessRequest]) -> None:
    """Negative control: a decider that keeps deciding at a cached (stale) height while
    labelling the read with the live head is caught by :func:`violations`."""
    chain, request = raced
    grant = chain.run1(chain.grant(grantee={"account": MEMBERS["nurse-park"]}))
    stale = chain.height()

    def stale_decider(node: Node, req: AccessRequest) -> Read:
        head = node.head.header
        return Read(head.height, decide(_State(node), req, time=head.time, height=stale))

    reads, revoked_at = _race(chain, request, grant.tx.tx_id.hex()[:16], stale_decider)
    assert violations(reads, revoked_at)


# -- break-glass -----------------------------------------------------------------------------

NO_EMERGENCY = ["dr-kim", "nurse-park", "ph-lee", "auditor-choi", "seoul-general-admin",
                "patient-2"]  # fmt: skip


@pytest.mark.parametrize("actor", NO_EMERGENCY)
def test_break_glass_is_refused_without_the_capability(chain: Chain, actor: str) -> None:
    out = chain.run1(chain.break_glass(actor))
    assert (out.ok, out.code) == (False, "unauthorized"), out.receipt


def test_break_glass_control_and_capability_limits(chain: Chain) -> None:
    assert chain.enroll("seoul-general", "er-doc", generate_key(), capabilities=["emergency"]).ok
    assert chain.run1(chain.break_glass("er-doc")).ok  # control: the capability works
    # the capability cannot be given to a role it is not for
    out = chain.run1(chain.register_member("hanbit-pharmacy", "hanbit-pharmacy.ph-er",
                                           generate_key(), role="pharmacist",
                                           capabilities=["emergency"]))  # fmt: skip
    assert not out.ok, out.receipt


# -- a revoked key -----------------------------------------------------------------------------


def test_a_revoked_keys_new_transactions_are_refused_its_old_ones_verify(chain: Chain) -> None:
    key = generate_key()
    assert chain.enroll("seoul-general", "dr-old", key).ok
    earlier = chain.run1(chain.anchor("dr-old", id="obs-old"))
    assert earlier.ok
    admin, admin_key = chain.admin("seoul-general")
    revoke = chain.tx("identity.revoke_key@1", admin, {"kid": key.kid, "reason": "lost laptop"},
                      [admin_key])  # fmt: skip
    assert chain.run1(revoke).ok
    size = chain.node.store.log_size()
    with pytest.raises(LedgerError) as info:
        chain.node.submit([chain.anchor("dr-old", id="obs-new").raw])
    assert info.value.code == "revoked_key", info.value
    assert chain.node.store.log_size() == size
    report = chain.verify()  # the earlier transaction, signed before revocation, verifies
    assert report.chain.txs == size
    assert chain.node.store.find_tx(earlier.tx.tx_id) is not None


# -- block time --------------------------------------------------------------------------------


def test_block_time_never_decreases_even_if_the_clock_goes_back(demo_chain: InitResult) -> None:
    ticks = iter(range(10_000))
    base = now_ms()

    def backwards() -> int:  # the orderer's clock: an hour back every other call
        n = next(ticks)
        return base - (3_600_000 if n % 2 else 0) - n

    node = open_node(demo_chain.paths.root)
    node.orderer._clock = backwards  # type: ignore[attr-defined]  # the block-time source
    try:
        from carechain.crypto.keystore import Keyring
        from carechain.testing.chain_driver import FAST_SCRYPT_N

        chain = Chain(node, Keyring(demo_chain.paths.root, scrypt_n=FAST_SCRYPT_N))
        for i in range(6):
            chain.run(chain.register_member("medipharm", f"medipharm.t{i}", generate_key()))
        times = [parse_header(b.header).time for b in node.store.iter_blocks()]
    finally:
        node.stop()
        node.store.close()
    assert len(times) >= 8 and next(ticks) >= 4  # the orderer was asked, and lied, often
    assert all(a <= b for a, b in itertools.pairwise(times)), times


def test_a_block_time_going_back_is_refused_by_verify(demo_chain: InitResult, chain: Chain) -> None:
    """Negative control of the monotonic check: a re-sealed header one ms before its parent."""
    chain.run1(chain.register_member("medipharm", "medipharm.t", generate_key()))
    blocks = list(chain.node.store.iter_blocks())
    last, prev = blocks[-1], parse_header(blocks[-2].header)
    header = dataclasses.replace(parse_header(last.header), time=prev.time - 1)
    raw = header.to_bytes()
    key = load_node_key(demo_chain.paths.root)
    forged = dataclasses.replace(last, header=raw, signature=sign_header(raw, key).to_bytes())
    from carechain.contracts import default_contracts
    from carechain.errors import ChainVerificationError

    with pytest.raises(ChainVerificationError) as info:
        verify_chain(chain.node.genesis, iter([*blocks[:-1], forged]), default_contracts())
    assert (info.value.height, info.value.field) == (last.height, "time"), info.value

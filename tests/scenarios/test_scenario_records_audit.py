"""Audit completeness: every record-service call that reaches a decision leaves exactly one
committed audit entry, and every entry's inclusion proof verifies offline against the node's
signed checkpoint.

A few hundred mixed calls (permitted reads and searches, denied reads and searches, break-glass
reads) run concurrently, so the node batches their audit entries into few blocks.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from carechain.crypto.signatures import PublicKeyRecord, generate_key
from carechain.encoding import b64u_decode
from carechain.errors import AuthorizationError
from carechain.ledger.tx import parse_envelope
from carechain.merkle import NoteVerifier, leaf_hash, open_checkpoint, verify_inclusion
from carechain.node.chaindir import InitResult
from carechain.node.node import Node
from carechain.node.records import ACCOUNT_SYSTEM, open_record_service
from carechain.testing.chain_driver import Chain

R5 = Path(__file__).resolve().parents[1] / "vectors" / "fhir" / "r5"
ROUNDS = 60  # x 5 kinds of call = 300 calls


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((R5 / f"{name}.json").read_text())
    return data


def test_one_audit_entry_per_call_each_provable(
    chain: Chain, demo_node: Node, demo_chain: InitResult
) -> None:
    svc = open_record_service(demo_node, demo_chain.paths.root, base_url="https://sg.example")
    account, key = chain.patient("patient-1")
    me = svc.actor(account, key)
    patient = example("Patient-example")
    patient["identifier"].append({"system": ACCOUNT_SYSTEM, "value": account})
    pid = svc.create(me, patient).value.id  # the service assigns the ids
    ids = []
    for name in ("Observation-blood-pressure", "Observation-abdo-tender", "Encounter-example"):
        res = example(name)
        res["subject"] = {**res["subject"], "reference": f"Patient/{pid}"}
        ids.append(svc.create(me, res).value.id)
    er_key = generate_key()
    assert chain.enroll("seoul-general", "dr-er", er_key, capabilities=["emergency"]).ok
    er = svc.actor("seoul-general.dr-er", er_key)
    svc.break_glass(er, account, "cardiac arrest")
    lee = svc.actor(chain.account("ph-lee"), chain.key("ph-lee"))
    kim = svc.actor(chain.account("dr-kim"), chain.key("dr-kim"))
    before = chain.state(f"auditn/{account}")

    calls: list[tuple[str, Callable[[], object]]] = []
    for i in range(ROUNDS):
        rid = ids[i % 2]
        calls += [
            ("permit", partial(svc.read, me, "Observation", rid)),
            ("deny", partial(svc.read, lee, "Observation", rid)),
            ("break_glass", partial(svc.read, er, "Observation", rid, purpose="ETREAT")),
            ("permit", lambda: svc.search(me, "Observation", count=5)),
            ("deny", lambda: svc.search(kim, "Encounter", patient=f"Patient/{pid}")),
        ]

    def run(call: tuple[str, Callable[[], object]]) -> str:
        try:
            call[1]()
        except AuthorizationError:
            return "deny"
        return "permit"

    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(run, calls))
    want = ["deny" if kind == "deny" else "permit" for kind, _ in calls]
    assert outcomes == want

    after = chain.state(f"auditn/{account}")
    assert after - before == len(calls)  # exactly one entry per call
    entries = [chain.state(f"audit/{account}/{n:010d}") for n in range(before, after)]
    outcome_counts = Counter(e["outcome"] for e in entries)
    assert outcome_counts == {"permit": 3 * ROUNDS, "deny": 2 * ROUNDS}
    assert sum(1 for e in entries if e.get("break_glass")) == ROUNDS
    assert len({e["tx"] for e in entries}) == len(calls)

    # the access log (itself audited) proves every entry against the signed checkpoint
    log = svc.access_log(me, account)
    assert len(log) == after + 1
    store = demo_node.store
    note = store.find_checkpoint()
    assert note is not None
    verifiers = [
        NoteVerifier(
            name=demo_node.genesis.origin,
            record=PublicKeyRecord(alg=rec["alg"], public=b64u_decode(rec["pub"])),
        )
        for rec in (orjson.loads(v) for _, v in store.iter_state("node/"))
    ]
    cp = open_checkpoint(note, verifiers, demo_node.genesis.origin)
    requests = set()
    for view in log:
        proof = view.proof
        assert proof["tree_size"] == cp.size and bytes.fromhex(proof["root"]) == cp.root
        loc = store.find_tx(bytes.fromhex(view.entry["tx"]))
        assert loc is not None and loc.log_index == proof["leaf_index"]
        raw = store.find_envelope(loc.log_index)
        assert raw is not None
        body = parse_envelope(raw).body
        assert body.kind == "audit.record@1" and body.sender == "seoul-general.node"
        assert body.args["request"] == view.entry["request"]
        requests.add(body.args["request"])
        verify_inclusion(
            leaf_hash(raw),
            proof["leaf_index"],
            cp.size,
            [bytes.fromhex(h) for h in proof["proof"]],
            cp.root,
        )
    assert len(requests) == len(log)

"""The record service (node/records): FHIR records stored encrypted, anchored, consented, audited.

A real demo node; custodial signers are the demo keys. Every test also checks the audit trail in
state (``auditn/<patient>``, ``audit/<patient>/<n>``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import apsw
import pytest

from carechain.contracts.records import record_key
from carechain.crypto.kek import kek_path
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import generate_key
from carechain.errors import (
    AuthorizationError,
    ConflictError,
    GoneError,
    NotFoundError,
    VerificationError,
)
from carechain.fhir import FhirValidationError, canonical_fhir
from carechain.fhir.canonical import SUBJECT_FIELDS
from carechain.fhir.consent_map import CONSENT_ACTION_SYSTEM, PURPOSE_SYSTEM
from carechain.node.chaindir import ChainPaths, InitResult, open_node
from carechain.node.node import Node
from carechain.node.records import ACCOUNT_SYSTEM, FileRecordService, open_record_service
from carechain.node.records_api import Actor
from carechain.testing.chain_driver import FAST_SCRYPT_N, Chain

R5 = Path(__file__).resolve().parents[2] / "vectors" / "fhir" / "r5"
BASE = "https://seoul-general.example"


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((R5 / f"{name}.json").read_text())
    return data


def patient_resource(account: str) -> dict[str, Any]:
    """The official Patient example, naming its ledger account."""
    data = example("Patient-example")
    data["identifier"] = [*data["identifier"], {"system": ACCOUNT_SYSTEM, "value": account}]
    return data


def about(res: dict[str, Any], pid: str) -> dict[str, Any]:
    """``res`` (a copy) with its subject/patient reference rewritten to ``Patient/<pid>``."""
    out = copy.deepcopy(res)
    field = SUBJECT_FIELDS[out["resourceType"]]
    out[field] = {**(out.get(field) or {}), "reference": f"Patient/{pid}"}
    return out


def without_id(res: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(res))
    out.pop("id", None)
    return out


@pytest.fixture
def svc(demo_node: Node, demo_chain: InitResult) -> Iterator[FileRecordService]:
    service = open_record_service(demo_node, demo_chain.paths.root, base_url=BASE)
    yield service


def audit_entries(chain: Chain, patient: str) -> list[dict[str, Any]]:
    n = chain.state(f"auditn/{patient}") or 0
    return [chain.state(f"audit/{patient}/{i:010d}") for i in range(n)]


def patient_actor(chain: Chain, svc: FileRecordService, name: str = "patient-1") -> Actor:
    account, key = chain.patient(name)
    return svc.actor(account, key)


def member(svc: FileRecordService, chain: Chain, name: str) -> Actor:
    return svc.actor(chain.account(name), chain.key(name))


def seed(chain: Chain, svc: FileRecordService) -> tuple[Actor, dict[str, dict[str, Any]]]:
    """patient-1 stores the official Patient, an Observation and an Encounter.

    The service assigns the ids: each resource in the returned map carries its assigned id, and
    the Observation and Encounter reference the Patient by its assigned id.
    """
    me = patient_actor(chain, svc)
    pat = patient_resource(me.account)
    pat["id"] = svc.create(me, pat).value.id
    sent = {"Patient": pat}
    for name in ("Observation-blood-pressure", "Encounter-example"):
        res = about(example(name), pat["id"])
        res["id"] = svc.create(me, res).value.id
        sent[res["resourceType"]] = res
    return me, sent


def test_official_examples_round_trip_with_identical_canonical_content(
    chain: Chain, svc: FileRecordService
) -> None:
    me = patient_actor(chain, svc)
    before = len(audit_entries(chain, me.account))
    patient = patient_resource(me.account)
    pid = svc.create(me, copy.deepcopy(patient)).value.id
    sent = [patient] + [
        about(example(name), pid)
        for name in (
            "Observation-blood-pressure", "Observation-abdo-tender",
            "Encounter-example", "Encounter-emerg",
        )
    ]  # fmt: skip
    ids = []
    for res in sent:
        rtype = res["resourceType"]
        if rtype == "Patient":
            rid = pid
        else:
            created = svc.create(me, copy.deepcopy(res))
            rid = created.value.id
            assert canonical_fhir(without_id(created.value.resource)) == canonical_fhir(
                without_id(res)
            )
        ids.append(rid)
        assert rid != res["id"] and len(rid) == 32  # the server's opaque id, not the example's
        got = svc.read(me, rtype, rid)
        assert got.value.resource["id"] == rid
        assert canonical_fhir(without_id(got.value.resource)) == canonical_fhir(without_id(res))
        assert got.value.resource["meta"]["versionId"] == "1"
        assert got.value.resource["meta"]["lastUpdated"].endswith("Z")
        assert got.value.patient == me.account and got.value.author == me.account
        assert got.basis == {"kind": "self"}
        rec = chain.state(record_key("seoul-general", rtype, rid))
        (v1,) = rec["versions"]
        assert v1["digest"] == got.value.digest
        assert v1["url"] == f"{BASE}/fhir/{rtype}/{rid}/_history/1"
        assert "Chalmers" not in json.dumps(rec)  # no PHI on chain
        assert rec["id"] == rid and f"/{res['id']}/" not in v1["url"]  # nor the client's id
    # a write and a read per resource: one audit entry each
    entries = audit_entries(chain, me.account)[before:]
    assert [e["action"] for e in entries] == ["write"] + ["read"] + ["write", "read"] * (
        len(sent) - 1
    )
    assert all(e["outcome"] == "permit" and e["org"] == "seoul-general" for e in entries)
    # every non-Patient record shares its Patient's secure index
    indexes = {
        chain.state(record_key("seoul-general", r["resourceType"], rid))["versions"][0]["index"]
        for r, rid in zip(sent, ids, strict=True)
    }
    assert len(indexes) == 1


def records_containing(state: Callable[[str], Any], keys: list[str], needle: str) -> list[str]:
    """The state keys among ``keys`` whose value mentions ``needle`` anywhere."""
    return [k for k in keys if needle in json.dumps(state(k))]


def test_create_ignores_the_client_id_and_keeps_it_off_chain(
    chain: Chain, svc: FileRecordService
) -> None:
    me = patient_actor(chain, svc)
    phi_id = "john-smith-1970"
    pat = patient_resource(me.account)
    pat["id"] = phi_id
    created = svc.create(me, pat)
    pid = created.value.id
    assert pid != phi_id and len(pid) == 32 and int(pid, 16) >= 0  # opaque uuid4 hex
    assert created.value.resource["id"] == pid
    obs = about(example("Observation-abdo-tender"), pid)
    obs["id"] = f"{phi_id}-bp"
    oid = svc.create(me, obs).value.id
    assert oid != obs["id"] and len(oid) == 32
    with pytest.raises(NotFoundError):
        svc.read(me, "Patient", phi_id)
    assert svc.read(me, "Patient", pid).value.resource["id"] == pid
    keys = [
        record_key("seoul-general", "Patient", pid),
        record_key("seoul-general", "Observation", oid),
    ]
    for key in keys:
        rec = chain.state(key)
        assert rec is not None and rec["id"] in (pid, oid)
        assert all(phi_id not in v["url"] for v in rec["versions"])
    assert records_containing(chain.state, keys, phi_id) == []
    assert chain.state(record_key("seoul-general", "Patient", phi_id)) is None
    # negative controls: the scan finds what is there (the assigned id), and it would have
    # caught the old behaviour (the anchor keeping the client's id in ``id`` and ``url``)
    assert records_containing(chain.state, keys, pid) == keys[:1]
    real = chain.state(keys[0])
    leaky = {
        **real,
        "id": phi_id,
        "versions": [{**v, "url": v["url"].replace(pid, phi_id)} for v in real["versions"]],
    }
    old_key = record_key("seoul-general", "Patient", phi_id)
    old_state = {old_key: leaky, keys[1]: chain.state(keys[1])}
    assert records_containing(old_state.__getitem__, [old_key, keys[1]], phi_id) == [old_key]


def test_create_assigns_an_id_and_refuses_what_it_cannot_place(
    chain: Chain, svc: FileRecordService
) -> None:
    me, sent = seed(chain, svc)
    pid = sent["Patient"]["id"]
    obs = about(example("Observation-abdo-tender"), pid)
    del obs["id"]
    created = svc.create(me, obs)
    assert len(created.value.id) == 32 and created.value.resource["id"] == created.value.id
    orphan = example("Observation-abdo-tender")
    orphan["subject"] = {"reference": "Patient/nobody"}
    with pytest.raises(FhirValidationError, match="not a Patient stored on this node"):
        svc.create(me, orphan)
    nameless = example("Patient-f001")
    with pytest.raises(FhirValidationError, match=ACCOUNT_SYSTEM):
        svc.create(me, nameless)
    # the body's id is ignored: creating the same example again is a new record, not a conflict
    again = svc.create(me, sent["Encounter"])
    assert again.value.id != sent["Encounter"]["id"] and again.value.version == 1
    unsigned = svc.actor(me.account)
    with pytest.raises(AuthorizationError) as exc:
        svc.create(unsigned, about(example("Encounter-home"), pid))
    assert exc.value.code == "signature_required"


def test_update_chains_versions_and_if_match_detects_conflicts(
    chain: Chain, svc: FileRecordService
) -> None:
    me, sent = seed(chain, svc)
    oid = sent["Observation"]["id"]
    v2 = copy.deepcopy(sent["Observation"])
    v2["status"] = "amended"
    out = svc.update(me, "Observation", oid, v2, if_match=1)
    assert out.value.version == 2 and out.value.resource["meta"]["versionId"] == "2"
    rec = chain.state(record_key("seoul-general", "Observation", oid))
    assert rec["latest"] == 2
    with pytest.raises(ConflictError) as exc:
        svc.update(me, "Observation", oid, v2, if_match=1)
    assert exc.value.code == "version_conflict"
    assert audit_entries(chain, me.account)[-1]["outcome"] == "error"
    hist = svc.history(me, "Observation", oid).value
    assert [h.version for h in hist] == [2, 1]
    assert canonical_fhir(hist[1].resource) == canonical_fhir(sent["Observation"])
    assert svc.vread(me, "Observation", oid, 1).value.digest == hist[1].digest
    with pytest.raises(NotFoundError):
        svc.vread(me, "Observation", oid, 3)
    del v2["id"]
    with pytest.raises(NotFoundError):
        svc.update(me, "Observation", "no-such", v2)


def consent_for(
    reference: str, patient: str, *, actions: tuple[str, ...] = ("access",)
) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "subject": {"reference": f"Patient/{patient}"},
        "decision": "permit",
        "provision": [
            {
                "actor": [{"reference": {"reference": reference}}],
                "action": [
                    {"coding": [{"system": CONSENT_ACTION_SYSTEM, "code": a}]} for a in actions
                ],
                "purpose": [{"system": PURPOSE_SYSTEM, "code": "TREAT"}],
            }
        ],
    }


def test_other_org_denied_then_permitted_by_consent_then_denied_after_revoke(
    chain: Chain, svc: FileRecordService
) -> None:
    me, sent = seed(chain, svc)
    pid, oid = sent["Patient"]["id"], sent["Observation"]["id"]
    lee = member(svc, chain, "ph-lee")
    with pytest.raises(AuthorizationError) as exc:
        svc.read(lee, "Observation", oid)
    assert exc.value.code == "no_consent"
    last = audit_entries(chain, me.account)[-1]
    assert (last["actor"], last["outcome"], last["reason"]) == (lee.account, "deny", "no_consent")
    assert exc.value.audit_id == last["tx"]  # type: ignore[attr-defined]
    with pytest.raises(AuthorizationError):
        svc.search(lee, "Observation", patient=f"Patient/{pid}")

    granted = svc.grant(me, consent_for(f"Practitioner/{lee.account}", pid))
    cid = granted.value["id"]
    assert granted.value["grantee"] == {"account": lee.account}
    got = svc.read(lee, "Observation", oid)
    assert got.basis == {"id": cid, "kind": "consent"}
    page = svc.search(lee, "Observation", patient=f"Patient/{pid}").value
    assert [i.id for i in page.items] == [oid] and page.total == 1
    assert [c["id"] for c in svc.consents(lee, me.account)] == [cid]
    assert [c["id"] for c in svc.consents(me, f"Patient/{pid}")] == [cid]
    with pytest.raises(AuthorizationError):
        svc.consents(member(svc, chain, "dr-kim"), me.account)
    # a read consent does not let ph-lee write (and ph-lee's org is not hosted here)
    kim = member(svc, chain, "dr-kim")
    with pytest.raises(AuthorizationError) as exc:
        svc.create(kim, about(example("Observation-abdo-tender"), pid))
    assert exc.value.code == "no_consent"

    svc.revoke(me, cid)
    with pytest.raises(AuthorizationError) as exc:
        svc.read(lee, "Observation", oid)
    assert exc.value.code == "revoked"
    assert audit_entries(chain, me.account)[-1]["outcome"] == "deny"


def test_a_write_consent_lets_a_practitioner_author_records(
    chain: Chain, svc: FileRecordService
) -> None:
    me, sent = seed(chain, svc)
    pid = sent["Patient"]["id"]
    kim = member(svc, chain, "dr-kim")
    svc.grant(me, consent_for(f"Practitioner/{kim.account}", pid, actions=("correct",)))
    obs = about(example("Observation-abdo-tender"), pid)
    out = svc.create(kim, obs)
    assert out.value.author == kim.account and out.basis["kind"] == "consent"
    assert svc.read(kim, "Observation", out.value.id).basis["kind"] in ("author", "consent")


def test_break_glass_read_is_permitted_and_flagged(chain: Chain, svc: FileRecordService) -> None:
    me, sent = seed(chain, svc)
    pid, oid = sent["Patient"]["id"], sent["Observation"]["id"]
    key = generate_key()
    assert chain.enroll("seoul-general", "dr-er", key, capabilities=["emergency"]).ok
    er = svc.actor("seoul-general.dr-er", key)
    with pytest.raises(AuthorizationError):
        svc.read(er, "Observation", oid, purpose="ETREAT")
    opened = svc.break_glass(er, f"Patient/{pid}", "unconscious in the ED")
    sid = opened.value["id"]
    got = svc.read(er, "Observation", oid, purpose="ETREAT")
    assert got.basis == {"id": sid, "kind": "break_glass"}
    with pytest.raises(AuthorizationError) as exc:
        svc.read(er, "Observation", oid)  # TREAT: not what the session covers
    assert exc.value.code == "wrong_purpose"
    entries = audit_entries(chain, me.account)
    assert entries[-2]["break_glass"] is True and entries[-2]["outcome"] == "permit"
    assert entries[-3]["action"] == "break_glass"
    nobody = member(svc, chain, "nurse-park")
    with pytest.raises(AuthorizationError):
        svc.break_glass(nobody, me.account, "no capability")
    # review: the patient once, strangers never, unknown sessions not found
    with pytest.raises(AuthorizationError):
        svc.review(nobody, sid)
    with pytest.raises(NotFoundError):
        svc.review(me, "0" * 16)
    svc.review(me, sid, "I was in the ED that night")
    with pytest.raises(ConflictError):
        svc.review(me, sid)
    reviews = chain.state(f"bg/{sid}")["reviews"]
    assert [(r["as"], r["by"]) for r in reviews] == [("patient", me.account)]


def _records_db(svc: FileRecordService) -> apsw.Connection:
    return apsw.Connection(str(svc.index.path))


def test_tampered_ciphertext_and_index_rows_are_detected_and_audited(
    chain: Chain, svc: FileRecordService
) -> None:
    me, sent = seed(chain, svc)
    pid, oid, eid = (sent[t]["id"] for t in ("Patient", "Observation", "Encounter"))
    obs = svc.index.find_version("seoul-general", "Observation", oid, 1)
    enc = svc.index.find_version("seoul-general", "Encounter", eid, 1)
    assert obs is not None and enc is not None
    # 1. a flipped ciphertext byte
    path = svc.store.blob_path(obs.address)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError):
        svc.read(me, "Observation", oid)
    with pytest.raises(VerificationError) as exc:
        svc.read(me, "Observation", oid)
    last = audit_entries(chain, me.account)[-1]
    assert (last["outcome"], last["reason"]) == ("error", "integrity")
    assert exc.value.audit_id == last["tx"]  # type: ignore[attr-defined]
    # 2. an index row pointing at another (intact) blob
    conn = _records_db(svc)
    conn.execute(
        "UPDATE versions SET address = ? WHERE type = 'Encounter' AND id = ?",
        (svc.index.find_version("seoul-general", "Patient", pid, 1).address, eid),  # type: ignore[union-attr]
    )
    with pytest.raises(VerificationError, match=r"on-chain digest|another resource"):
        svc.read(me, "Encounter", eid)
    # 3. a changed wrapped blinding key
    conn.execute(
        "UPDATE versions SET address = ?, wrapped_key = ? WHERE type = 'Encounter'",
        (enc.address, bytes(40)),
    )
    with pytest.raises(VerificationError):
        svc.read(me, "Encounter", eid)
    conn.close()
    tail = audit_entries(chain, me.account)[-2:]
    assert [(e["outcome"], e["reason"]) for e in tail] == [("error", "integrity")] * 2
    assert svc.read(me, "Patient", pid).value.version == 1  # the rest is intact


def test_erasure_shreds_every_version(
    chain: Chain, svc: FileRecordService, demo_chain: InitResult
) -> None:
    me, sent = seed(chain, svc)
    oid = sent["Observation"]["id"]
    marker = "ERASE-ME-7f3a9c"
    v2 = copy.deepcopy(sent["Observation"])
    v2["note"] = [{"text": marker}]
    svc.update(me, "Observation", oid, v2)
    addresses = [v.address for v in svc.index.versions("seoul-general", "Observation", oid)]
    kim = member(svc, chain, "dr-kim")
    with pytest.raises(AuthorizationError) as exc:
        svc.erase(kim, "Observation", oid, reason="tidy", basis="data_error")
    assert exc.value.code == "unauthorized"
    out = svc.erase(me, "Observation", oid, reason="patient asked", basis="patient_request")
    rec = chain.state(record_key("seoul-general", "Observation", oid))
    assert rec["status"] == "erased" and rec["erased"]["tx"] == out.value
    with pytest.raises(GoneError):
        svc.read(me, "Observation", oid)
    with pytest.raises(GoneError):
        svc.erase(me, "Observation", oid, reason="again", basis="patient_request")
    entries = audit_entries(chain, me.account)
    assert [(e["action"], e["outcome"]) for e in entries[-3:]] == [
        ("erase", "permit"), ("read", "deny"), ("erase", "deny"),
    ]  # fmt: skip
    for address in addresses:
        assert not svc.store.exists(address)
        assert not svc.store.blob_path(address).exists()
    assert all(
        v.wrapped_key is None for v in svc.index.versions("seoul-general", "Observation", oid)
    )
    for path in (demo_chain.paths.root / "records").rglob("*"):
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), path
    assert svc.search(me, "Observation").value.total == 0
    chain.verify()  # verify_store passes


def test_access_log_is_for_the_patient_or_a_privacy_officer(
    chain: Chain, svc: FileRecordService
) -> None:
    me, sent = seed(chain, svc)
    pid, oid = sent["Patient"]["id"], sent["Observation"]["id"]
    kim = member(svc, chain, "dr-kim")
    with pytest.raises(AuthorizationError):
        svc.read(kim, "Observation", oid)
    with pytest.raises(AuthorizationError):
        svc.access_log(kim, me.account)
    log = svc.access_log(me, f"Patient/{pid}")
    n = chain.state(f"auditn/{me.account}")
    assert len(log) == n  # including this access-log read itself
    assert log[-1].entry["reason"] == "self" and log[-2].entry["actor"] == kim.account
    assert {"leaf_index", "tree_size", "proof", "root"} <= set(log[0].proof)
    key = generate_key()
    assert chain.enroll(
        "seoul-general", "po-han", key, role="clerk", capabilities=["privacy_officer"]
    ).ok
    officer = svc.actor("seoul-general.po-han", key)
    assert len(svc.access_log(officer, me.account)) == n + 1
    last = svc.access_log(me, me.account)[-2].entry  # the officer's read, before mine
    assert last["actor"] == officer.account
    assert last["basis"] == {"kind": "custodian"} and last["reason"] == "privacy_officer"


def test_search_filters_by_code_and_last_updated(chain: Chain, svc: FileRecordService) -> None:
    me, sent = seed(chain, svc)
    pid, oid = sent["Patient"]["id"], sent["Observation"]["id"]
    abdo = svc.create(me, about(example("Observation-abdo-tender"), pid)).value.id
    page = svc.search(me, "Observation").value
    assert page.total == 2 and page.items[0].id == abdo  # newest first
    code = sent["Observation"]["code"]["coding"][0]
    by_code = svc.search(me, "Observation", code=code["code"]).value
    assert [i.id for i in by_code.items] == [oid]
    by_system = svc.search(me, "Observation", code=f"{code['system']}|{code['code']}").value
    assert by_system.total == 1
    t = page.items[0].time
    assert svc.search(me, "Observation", last_updated=(t, None)).value.total == 1
    assert svc.search(me, "Observation", ids=[oid]).value.total == 1
    second = svc.search(me, "Observation", count=1, offset=1).value
    assert [i.id for i in second.items] == [oid] and second.total == 2


def test_keys_are_created_lazily_and_records_survive_a_restart(
    demo_chain: InitResult,
) -> None:
    root = demo_chain.paths.root
    paths = ChainPaths(root)
    assert kek_path(root).exists() and paths.index_key.stat().st_mode & 0o777 == 0o600
    kek_path(root).unlink()  # a chain initialised before the record service
    paths.index_key.unlink()
    node = open_node(root)
    try:
        chain = Chain(node, Keyring(root, scrypt_n=FAST_SCRYPT_N))
        svc = open_record_service(node, root, base_url=BASE)
        assert kek_path(root).exists() and len(paths.index_key.read_bytes()) == 32
        _, sent = seed(chain, svc)
    finally:
        node.stop()
        node.store.close()
    node = open_node(root)
    try:
        chain = Chain(node, Keyring(root, scrypt_n=FAST_SCRYPT_N))
        svc = open_record_service(node, root, base_url=BASE)
        got = svc.read(patient_actor(chain, svc), "Observation", sent["Observation"]["id"])
        assert canonical_fhir(got.value.resource) == canonical_fhir(sent["Observation"])
    finally:
        node.stop()
        node.store.close()


def test_binary_attachments_stream_in_bounded_memory(chain: Chain, svc: FileRecordService) -> None:
    """A 24 MiB attachment goes in and out without being held whole: traced peak memory stays
    under 4 MiB (the content itself is six times that); negative control: holding it whole
    shows up in the same measurement."""
    import tracemalloc

    me, sent = seed(chain, svc)
    size, piece = 24 << 20, bytes(range(256)) * 256  # 64 KiB

    def chunks() -> Iterator[bytes]:
        for _ in range(size // len(piece)):
            yield piece

    tracemalloc.start()
    try:
        created = svc.create_binary(me, content_type="application/dicom",
                                    security_context=f"Patient/{sent['Patient']['id']}",
                                    chunks=chunks())  # fmt: skip
        _, peak_in = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        read = svc.read_binary(me, created.value.id)
        total = sum(len(c) for c in read.value.chunks)
        _, peak_out = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        whole = b"".join(chunks())  # the negative control
        _, peak_whole = tracemalloc.get_traced_memory()
        del whole
    finally:
        tracemalloc.stop()
    assert total == size and read.value.size == size
    assert read.value.content_type == "application/dicom"
    assert peak_in < 4 << 20, peak_in
    assert peak_out < 4 << 20, peak_out
    assert peak_whole > size, peak_whole


@pytest.mark.parametrize("value", [0, -1, "big", True, 1024])
def test_attachment_limit_config_is_checked(demo_chain: InitResult, value: Any) -> None:
    from carechain.errors import ConfigurationError
    from carechain.node.records.service import max_attachment_bytes

    paths = ChainPaths(demo_chain.paths.root)
    config = json.loads(paths.config.read_text())
    assert max_attachment_bytes(paths) == 64 << 20  # the default
    paths.config.write_text(json.dumps({**config, "max_attachment_bytes": 256 << 20}))
    assert max_attachment_bytes(paths) == 256 << 20
    paths.config.write_text(json.dumps({**config, "max_attachment_bytes": value}))
    with pytest.raises(ConfigurationError, match="max_attachment_bytes"):
        max_attachment_bytes(paths)

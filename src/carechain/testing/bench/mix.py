"""The realistic transaction mix of the ingest workloads, pre-signed ahead of the timed part.

The world is the demo consortium with its domain data (``init_chain(demo=True,
domains=True)``: dr-kim is a registered prescriber, medipharm a manufacturer with a product)
plus ``patients`` bench patients and ``doctors`` bench practitioners of Seoul General with
prescriber credentials, registered before the clock starts (the prescription contract keeps
one index list per prescriber and per patient, so one doctor writing every prescription
would soon hit its 10,000-entry bound). The mix repeats a cycle
of ten transactions, each built with the contract's own argument shapes:

====================================  =====  ===========================================
kind                                  share  signer
====================================  =====  ===========================================
``identity.register_patient@1``       2/10   a fresh patient key (introduced in the tx)
``consent.grant@1``                   2/10   a bench patient (key in state)
``records.anchor@1``                  3/10   a bench doctor (a new FHIR Observation each)
``prescriptions.issue@1``             2/10   a bench doctor (schedule IV, a bench patient)
``supply.capture@1``                  1/10   medipharm.admin (commissioning of 1 EPC)
====================================  =====  ===========================================

Signing runs in a process pool (``presign_mix``): it is the clients' work, not the node's.
With ``alg="ml-dsa-65"`` the patients (their registrations and grants) sign with ML-DSA-65;
the ML-DSA-65 workload submits only those two kinds (:data:`PATIENT_CYCLE`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.encoding import b64u_encode
from carechain.ledger.tx import make_tx

CYCLE = (
    "identity.register_patient@1",
    "consent.grant@1",
    "records.anchor@1",
    "prescriptions.issue@1",
    "records.anchor@1",
    "identity.register_patient@1",
    "consent.grant@1",
    "records.anchor@1",
    "prescriptions.issue@1",
    "supply.capture@1",
)
"""The kinds of one cycle of the mix, in submission order."""

PATIENT_CYCLE = ("identity.register_patient@1", "consent.grant@1")
"""The ML-DSA-65 workload's cycle: only patients sign, so every signature is ML-DSA-65."""

DR_KIM = "seoul-general.dr-kim"
MANUFACTURER = "medipharm.admin"
_DAY = 86_400_000


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    """Who signs what in the mix (everything a signing worker needs; picklable)."""

    chain: str
    """Chain id."""
    doctor: PrivateKey
    """dr-kim's key."""
    manufacturer: PrivateKey
    """medipharm.admin's key."""
    patients: tuple[tuple[str, PrivateKey], ...]
    """Registered bench patients: (account, key)."""
    doctors: tuple[tuple[str, PrivateKey], ...] = ()
    """Registered bench practitioners with prescriber credentials (default: dr-kim alone)."""
    alg: str = "ed25519"
    """Algorithm of new patient keys."""
    salt: str = ""
    """Makes ids of two runs on one chain distinct."""
    kinds: tuple[str, ...] = CYCLE
    """The cycle of kinds to submit (:data:`CYCLE`, or :data:`PATIENT_CYCLE`)."""


def _pub(key: PrivateKey) -> dict[str, str]:
    return {"alg": key.alg, "pub": b64u_encode(key.public)}


def _digest(*parts: object) -> str:
    return b64u_encode(hashlib.sha256("/".join(map(str, parts)).encode()).digest())


def _capture_args(world: World, i: int, now: int) -> dict[str, Any]:
    from carechain.epcis.mapping import commissioning_document, prepare_capture
    from carechain.node.supply.demo import DEMO_GLNS, DRUG_GTIN

    doc = commissioning_document(
        gtin=DRUG_GTIN,
        serials=[f"M{world.salt}{i:09d}"],
        lot="MIX1",
        expiry="2030-12-31",
        time_ms=now - 1000,
        gln=DEMO_GLNS["medipharm"],
    )
    return prepare_capture(doc).args("dscsa")


def mix_tx(world: World, i: int, now: int) -> bytes:
    """The ``i``-th transaction of the mix, signed, created at ``now`` (ms)."""
    from carechain.contracts.identity import patient_account_id

    kind = world.kinds[i % len(world.kinds)]
    account, pkey = world.patients[i % len(world.patients)]
    doctor, dkey = (
        world.doctors[i % len(world.doctors)] if world.doctors else (DR_KIM, world.doctor)
    )
    keys: list[PrivateKey]
    args: dict[str, Any]
    if kind == "identity.register_patient@1":
        new = generate_key(world.alg)
        sender, args, keys = patient_account_id(new.kid), {"keys": [_pub(new)]}, [new]
    elif kind == "consent.grant@1":
        sender, keys = account, [pkey]
        args = {
            "actions": ["read"],
            "decision": "permit",
            "grantee": {"account": DR_KIM},
            "period": {"end": now + _DAY, "start": now - 3_600_000},
            "purposes": ["TREAT"],
            "scope": {},
        }
    elif kind == "records.anchor@1":
        rid = f"bench-{world.salt}{i}"
        sender, keys = doctor, [dkey]
        args = {
            "digest": _digest("obs", world.salt, i),
            "id": rid,
            "index": _digest("index", account),
            "org": "seoul-general",
            "patient": account,
            "type": "Observation",
            "url": f"https://seoul-general.example/fhir/Observation/{rid}/_history/1",
            "version": 1,
        }
    elif kind == "prescriptions.issue@1":
        sender, keys = doctor, [dkey]
        args = {
            "days_supply": 30,
            "digest": _digest("rx", world.salt, i),
            "earliest_fill": now,
            "expires": now + 60 * _DAY,
            "medication": {
                "form": "tablet",
                "name": "alprazolam",
                "rxnorm": "308048",
                "strength": "0.5 mg",
            },
            "patient": account,
            "quantity": 30,
            "refills": 1,
            "schedule": "IV",
        }
    else:
        sender, keys = MANUFACTURER, [world.manufacturer]
        args = _capture_args(world, i, now)
    tx = make_tx(
        chain=world.chain,
        kind=kind,
        sender=sender,
        args=args,
        keys=keys,
        created=now,
        nonce=os.urandom(16),
    )
    return tx.raw


def _sign_range(job: tuple[World, int, int, int]) -> list[bytes]:
    world, start, stop, now = job
    return [mix_tx(world, i, now) for i in range(start, stop)]


def presign_mix(
    world: World, count: int, now: int, *, start: int = 0, workers: int | None = None
) -> list[bytes]:
    """Transactions ``start .. start+count`` of the mix, signed in a process pool."""
    out: list[bytes] = []
    for chunk in iter_presigned(world, count, now, start=start, workers=workers):
        out.extend(chunk)
    return out


def iter_presigned(
    world: World,
    count: int,
    now: int,
    *,
    start: int = 0,
    workers: int | None = None,
    chunk: int = 2_000,
) -> Iterator[list[bytes]]:
    """Like :func:`presign_mix`, in order, one chunk at a time (bounded memory)."""
    jobs = [
        (world, i, min(i + chunk, start + count), now) for i in range(start, start + count, chunk)
    ]
    if count < 400:
        for job in jobs:
            yield _sign_range(job)
        return
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    cores = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=cores, mp_context=context) as pool:
        window: list[Future[list[bytes]]] = []
        for job in jobs:  # at most 2 chunks per worker ahead of the consumer
            window.append(pool.submit(_sign_range, job))
            if len(window) > 2 * cores:
                yield window.pop(0).result()
        for fut in window:
            yield fut.result()


def _dea(j: int) -> str:
    """A DEA-style number with a valid check digit for bench doctor ``j``."""
    d = [int(c) for c in f"{j:06d}"]
    check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    return f"BB{j:06d}{check}"


def register_doctors(node: Any, admin: PrivateKey, count: int) -> list[tuple[str, PrivateKey]]:
    """Register ``count`` Seoul General practitioners with prescriber credentials (setup)."""
    from carechain.node.node import now_ms

    def tx(kind: str, args: dict[str, Any]) -> bytes:
        return make_tx(
            chain=node.genesis.chain, kind=kind, sender="seoul-general.admin", args=args,
            keys=[admin], created=now_ms(), nonce=os.urandom(16),
        ).raw  # fmt: skip

    doctors = [(f"seoul-general.bench-dr-{j}", generate_key()) for j in range(count)]
    members = [
        tx("identity.register_member@1", {"account": account, "keys": [_pub(key)],
                                          "org": "seoul-general", "role": "practitioner"})
        for account, key in doctors
    ]  # fmt: skip
    year = now_ms() + 365 * _DAY
    creds = [
        tx("credentials.register_prescriber@1", {"account": account, "expires": year,
                                                 "number": _dea(j), "schedules": ["IV", "V"]})
        for j, (account, _) in enumerate(doctors)
    ]  # fmt: skip
    for raws in (members, creds):
        for i in range(0, len(raws), 1000):
            node.submit_and_wait(raws[i : i + 1000], timeout=300)
    return doctors


def register_patients(node: Any, count: int, alg: str = "ed25519") -> list[tuple[str, PrivateKey]]:
    """Register ``count`` bench patients through ``node`` (setup, not timed)."""
    from carechain.contracts.identity import patient_account_id
    from carechain.node.node import now_ms

    out: list[tuple[str, PrivateKey]] = []
    raws: list[bytes] = []
    for _ in range(count):
        key = generate_key(alg)
        account = patient_account_id(key.kid)
        raws.append(
            make_tx(
                chain=node.genesis.chain,
                kind="identity.register_patient@1",
                sender=account,
                args={"keys": [_pub(key)]},
                keys=[key],
                created=now_ms(),
                nonce=os.urandom(16),
            ).raw
        )
        out.append((account, key))
    for i in range(0, len(raws), 1000):
        node.submit_and_wait(raws[i : i + 1000], timeout=300)
    return out

"""Audited FHIR reads over HTTP against the real record service of a demo chain.

Setup (untimed): patient-1 lets Seoul General write its records and Hanbit Pharmacy read
them (two FHIR Consents, committed as ``consent.grant@1``); dr-kim stores a Patient and an
Observation. Timed: the pharmacist ph-lee reads ``GET /fhir/Observation/{id}``; each read
checks the bearer token, decides consent at the current height, decrypts the record from
the off-chain store and commits an ``audit.record@1`` entry (the response carries its id in
``X-Audit-Entry``) before answering. One client reading in sequence (latency), then
``clients`` at once (throughput). The clients run in their own process.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from carechain.testing.bench.ingest import latency_summary

ACCOUNT_SYSTEM = "urn:carechain:account"


def _consent(subject: str, grantee: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "subject": {"reference": subject},
        "decision": "permit",
        "provision": [
            {
                "actor": [{"reference": {"reference": grantee}}],
                "action": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                                "code": code,
                            }
                        ]
                    }
                ],
                "purpose": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "code": "TREAT",
                    }
                ],
            }
        ],
    }


def _observation(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-11-01T09:30:00Z",
        "valueQuantity": {"value": 72, "unit": "beats/minute"},
    }


def _read_clients(url: str, patient: str, reads: int, clients: int) -> dict[str, Any]:
    """Client process: setup, then one sequential client, then ``clients`` concurrent ones."""
    import httpx

    def login(http: httpx.Client, key: str) -> dict[str, str]:
        resp = http.post("/v1/auth/login", data={"key": key, "password": "demo"})
        resp.raise_for_status()
        return {"Authorization": f"Bearer {resp.json()['access_token']}"}

    with httpx.Client(base_url=url, timeout=60) as http:
        p1 = login(http, "patient-1")
        for grantee, code in (("Organization/seoul-general", "correct"),
                              ("Organization/hanbit-pharmacy", "access")):  # fmt: skip
            http.post(
                "/fhir/Consent", json=_consent(f"Patient/{patient}", grantee, code), headers=p1
            ).raise_for_status()
        kim = login(http, "dr-kim")
        pat = {
            "resourceType": "Patient",
            "identifier": [{"system": ACCOUNT_SYSTEM, "value": patient}],
            "name": [{"family": "Hong", "given": ["Gildong"]}],
        }
        resp = http.post("/fhir/Patient", json=pat, headers=kim)
        resp.raise_for_status()
        pid = resp.json()["id"]
        resp = http.post("/fhir/Observation", json=_observation(pid), headers=kim)
        resp.raise_for_status()
        path = f"/fhir/Observation/{resp.json()['id']}"
        lee = login(http, "ph-lee")
        check = http.get(path, headers=lee)
        if check.status_code != 200 or "x-audit-entry" not in check.headers:
            raise RuntimeError(f"audited read refused: {check.status_code} {check.text[:200]}")

    def run(n: int, k: int) -> tuple[list[float], int, float]:
        latencies: list[float] = []
        failures = 0
        lock = threading.Lock()
        per = [n // k + (1 if i < n % k else 0) for i in range(k)]

        def client(count: int) -> None:
            nonlocal failures
            with httpx.Client(base_url=url, timeout=60) as c:
                for _ in range(count):
                    t = time.perf_counter()
                    r = c.get(path, headers=lee)
                    dt = time.perf_counter() - t
                    with lock:
                        if r.status_code == 200 and r.headers.get("x-audit-entry"):
                            latencies.append(dt)
                        else:
                            failures += 1

        threads = [threading.Thread(target=client, args=(c,)) for c in per]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return latencies, failures, time.perf_counter() - t0

    one, fail1, s1 = run(reads, 1)
    many, failn, sn = run(reads * 2, clients)
    return {
        "one_client": {
            "reads": len(one),
            "failures": fail1,
            "reads_per_s": round(len(one) / s1, 1),
            **latency_summary(one),
        },
        "concurrent": {
            "clients": clients,
            "reads": len(many),
            "failures": failn,
            "reads_per_s": round(len(many) / sn, 1),
            **latency_summary(many),
        },
    }


def fhir_reads(url: str, patient: str, *, reads: int, clients: int) -> dict[str, Any]:
    """Run the audited-read workload against ``url`` (see the module docstring)."""
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_read_clients, url, patient, reads, clients).result()

"""canonical_fhir determinism and round trips; keyed digest and secure index controls."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from fhir_vectors import R4_DIR, R5_DIR, example_files, load
from hypothesis import given, settings
from hypothesis import strategies as st

from carechain.errors import ValidationError
from carechain.fhir import (
    canonical_fhir,
    category_code,
    keyed_digest,
    parse_resource,
    patient_identifier,
    secure_index,
    subject_reference,
)

EXAMPLES = example_files(R5_DIR) + example_files(R4_DIR)
K1, K2 = b"\x01" * 32, b"\x02" * 32


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def _render(value: Any, rng: random.Random) -> bytes:
    indent = rng.choice([None, 0, 1, 2, 4, "\t"])
    seps = rng.choice([(",", ":"), (", ", ": "), (" ,", " : ")])
    text = json.dumps(value, indent=indent, separators=seps, ensure_ascii=rng.random() < 0.5)
    return (rng.choice(["", " ", "\n", "\r\n\t"]) + text + rng.choice(["", "\n", "  "])).encode()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_round_trip(path: Path) -> None:
    first = canonical_fhir(parse_resource(path.read_bytes()).data)
    again = parse_resource(first)
    assert canonical_fhir(again.data) == first
    assert json.loads(first) == json.loads(canonical_fhir(load(path)))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(EXAMPLES), st.randoms(use_true_random=False))
def test_key_order_and_whitespace_do_not_matter(path: Path, rng: random.Random) -> None:
    data = load(path)
    expected = canonical_fhir(data)
    variant = _render(_shuffled(data, rng), rng)
    assert canonical_fhir(parse_resource(variant).data) == expected


def test_canonical_is_rfc8785() -> None:
    out = canonical_fhir({"resourceType": "Observation", "b": 1.50, "a": [1e21, "é"]})
    assert out == '{"a":[1e+21,"é"],"b":1.5,"resourceType":"Observation"}'.encode()


def test_server_meta_is_excluded() -> None:
    base = {"resourceType": "Patient", "id": "p", "meta": {"profile": ["http://x/p"]}}
    served = {
        "resourceType": "Patient",
        "id": "p",
        "meta": {
            "versionId": "3",
            "lastUpdated": "2026-01-01T00:00:00Z",
            "profile": ["http://x/p"],
        },
    }
    assert canonical_fhir(base) == canonical_fhir(served)
    bare = {"resourceType": "Patient", "id": "p"}
    only_server = {**bare, "meta": {"versionId": "1"}}
    assert (
        canonical_fhir(bare)
        == canonical_fhir(only_server)
        == b'{"id":"p","resourceType":"Patient"}'
    )
    assert served["meta"]["versionId"] == "3"  # the input is not modified
    # negative control: a client-sent meta element is content
    assert canonical_fhir(base) != canonical_fhir({**base, "meta": {"profile": ["http://x/q"]}})


def test_content_change_changes_canonical_bytes() -> None:
    data = load(R5_DIR / "Patient-example.json")
    changed = json.loads(json.dumps(data))
    changed["birthDate"] = "1974-12-26"
    assert canonical_fhir(data) != canonical_fhir(changed)


def test_keyed_digest() -> None:
    canon = canonical_fhir(load(R5_DIR / "Observation-656.json"))
    d1 = keyed_digest(K1, canon)
    assert len(d1) == 32 and d1 == keyed_digest(K1, canon)
    assert d1 != keyed_digest(K2, canon)  # negative control: another key, another digest
    assert d1 != keyed_digest(K1, canon + b" ")
    with pytest.raises(ValidationError):
        keyed_digest(b"short", canon)


def test_secure_index() -> None:
    a = secure_index(K1, "urn:oid:1.2.36.146.595.217.0.1", "12345")
    assert a == secure_index(K1, "urn:oid:1.2.36.146.595.217.0.1", "12345")  # stable
    assert a.hex() == secure_index(K1, "urn:oid:1.2.36.146.595.217.0.1", "12345").hex()
    assert a != secure_index(K2, "urn:oid:1.2.36.146.595.217.0.1", "12345")  # key-dependent
    assert a != secure_index(K1, "urn:oid:1.2.36.146.595.217.0.1", "12346")
    # framing: moving the boundary between system and value changes the index
    assert secure_index(K1, "ab", "c") != secure_index(K1, "a", "bc")
    with pytest.raises(ValidationError):
        secure_index(K1, "", "1")


def test_secure_index_known_answer() -> None:
    import hashlib
    import hmac

    msg = b"CCv1 29 carechain/fhir/secure-index@1 33 CCv1 6 system 1 sCCv1 5 value 1 v"
    assert secure_index(K1, "s", "v") == hmac.new(K1, msg, hashlib.sha256).digest()


def test_patient_identifier() -> None:
    assert patient_identifier(load(R5_DIR / "Patient-example.json")) == (
        "urn:oid:1.2.36.146.595.217.0.1",
        "12345",
    )
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"use": "old", "system": "s0", "value": "v0"},
            {"system": "s1", "value": "v1"},
            {"use": "official", "system": "s2", "value": "v2"},
            {"use": "official", "value": "no-system"},
        ],
    }
    assert patient_identifier(patient) == ("s2", "v2")
    assert patient_identifier({"resourceType": "Patient"}) is None
    assert (
        patient_identifier(
            {"resourceType": "Observation", "identifier": [{"system": "s", "value": "v"}]}
        )
        is None
    )


@pytest.mark.parametrize(
    "name,expected",
    [
        ("Observation-656.json", "Patient/PatientId-patientId"),
        ("Encounter-f001.json", "Patient/f001"),
        ("Consent-consent-example-basic.json", "Patient/example"),
        ("Patient-example.json", "Patient/example"),
    ],
)
def test_subject_reference(name: str, expected: str) -> None:
    assert subject_reference(load(R5_DIR / name)) == expected


def test_subject_reference_forms() -> None:
    obs = {
        "resourceType": "Observation",
        "subject": {"reference": "https://h/fhir/Patient/9/_history/2"},
    }
    assert subject_reference(obs) == "Patient/9"
    assert (
        subject_reference({"resourceType": "Observation", "subject": {"reference": "Group/1"}})
        is None
    )
    assert (
        subject_reference(
            {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/a"}}
        )
        == "Patient/a"
    )
    assert subject_reference({"resourceType": "Practitioner", "id": "x"}) is None


def test_category_code() -> None:
    assert category_code(load(R5_DIR / "Observation-656.json")) is None or isinstance(
        category_code(load(R5_DIR / "Observation-656.json")), str
    )
    assert category_code(load(R5_DIR / "Observation-blood-pressure.json")) == "vital-signs"
    assert category_code({"resourceType": "AllergyIntolerance", "category": ["food"]}) == "food"
    assert (
        category_code({"resourceType": "Patient", "category": [{"coding": [{"code": "x"}]}]})
        is None
    )
    assert (
        category_code(
            {"resourceType": "Condition", "category": [{"text": "t"}, {"coding": [{"code": "c"}]}]}
        )
        == "c"
    )

"""Official-schema validation (every GS1 example valid; broken documents refused with precise
paths) and the mapping to ``supply.capture@1`` arguments."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from carechain.contracts.supply_rules import unpack_items
from carechain.epcis.mapping import (
    EventHashMismatchError,
    commissioning_document,
    item_of,
    pack_items,
    prepare_capture,
)
from carechain.epcis.schema import EPCISSchemaError, schema_issues, validate_epcis
from carechain.errors import ValidationError

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "epcis"
DOCS = sorted((VECTORS / "JSON").rglob("*.jsonld")) + sorted(
    (VECTORS / "JSON-Schema-test").glob("*.json")
)


DUPLICATE_NAMES = {"AssociationEvent-h.jsonld"}
"""GS1 examples that repeat a member name (``eventID``): ambiguous JSON (RFC 8259 §4 says names
SHOULD be unique, I-JSON RFC 7493 §2.3 MUST); refused like duplicate keys at every edge."""


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_every_gs1_example_is_schema_valid_and_prepares(path: Path) -> None:
    raw = path.read_bytes()
    validate_epcis(json.loads(raw))
    if path.name in DUPLICATE_NAMES:
        with pytest.raises(ValidationError, match="duplicate key"):
            prepare_capture(raw, strict_ids=False)
        return
    prepared = prepare_capture(raw, strict_ids=False)  # the acceptance capture (ADR 0008)
    assert prepared.events and all(len(e.mapped["id"]) == 64 for e in prepared.events)


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (
            lambda d: d["epcisBody"]["eventList"][0].__setitem__("action", "SHOUT"),
            "$.epcisBody.eventList[0].action",
        ),
        (lambda d: d["epcisBody"]["eventList"][0].pop("eventTime"), "$.epcisBody.eventList[0]"),
        (lambda d: d.pop("schemaVersion"), "$"),
    ],
)
def test_schema_errors_name_the_path(mutate: object, path: str) -> None:
    doc = json.loads((VECTORS / "JSON/Example_9.6.1-ObjectEvent.jsonld").read_text())
    mutate(doc)  # type: ignore[operator]
    issues = schema_issues(doc)
    assert issues and any(i.path == path for i in issues), issues
    with pytest.raises(EPCISSchemaError) as exc:
        prepare_capture(orjson.dumps(doc))
    assert exc.value.code == "epcis_schema"


def test_not_json_and_not_an_object() -> None:
    with pytest.raises(ValidationError):
        prepare_capture(b"{nope")
    with pytest.raises(EPCISSchemaError):
        validate_epcis([1, 2])


def test_strict_capture_refuses_an_illustrative_event_id() -> None:
    raw = (VECTORS / "JSON/Example_9.6.1-with-comment.jsonld").read_bytes()
    with pytest.raises(EventHashMismatchError) as exc:
        prepare_capture(raw)
    assert exc.value.code == "event_hash_mismatch" and exc.value.index == 0


def test_mapping_of_a_commissioning_document() -> None:
    raw = commissioning_document(
        gtin="08801234100011",
        serials=["S1", "S2"],
        lot="L1",
        expiry="2028-01-31",
        time_ms=1_700_000_000_000,
        gln="8801234000017",
    )
    (ev,) = prepare_capture(raw).events
    assert ev.id_check == "cbv2.0"
    m = ev.mapped
    assert (m["step"], m["action"], m["lot"], m["expiry"]) == (
        "commissioning",
        "ADD",
        "L1",
        "2028-01-31",
    )
    assert unpack_items(m["epcs"]) == ["01/08801234100011/21/S1", "01/08801234100011/21/S2"]


def test_pack_items_roundtrip_and_non_gs1_ids() -> None:
    keys = [f"01/08801234100011/21/{i}" for i in range(5000)] + ["00/108801234000000015"]
    packed = pack_items(keys, max_chars=2000)
    assert all(len(p) <= 2000 for p in packed) and unpack_items(packed) == keys
    assert item_of("urn:uuid:1234").startswith("x/")


def test_serial_runs_collapse_and_expand_exactly() -> None:
    keys = [f"01/08801234100011/21/B{i:08d}" for i in range(10_000)]
    packed = pack_items(keys)
    assert packed == ["01/08801234100011/21/|~B~00000000~10000"]
    assert unpack_items(packed) == keys
    odd = ["01/08801234100011/21/" + s for s in ["8", "9", "10", "11", "12", "7"]]
    assert unpack_items(pack_items(odd)) == odd

"""``supply.*`` handlers on a sandbox state: every argument and authorisation rejection."""

from __future__ import annotations

from typing import Any

import pytest

from carechain.epcis.event_hash import gs1_check_digit
from carechain.errors import ContractError
from carechain.testing.chain_driver import Sandbox

T = 1_800_000_000_000
GLN = "8801234000017"
GTIN = "0880123410001" + gs1_check_digit("0880123410001")
DEVICE = "0880123420001" + gs1_check_digit("0880123420001")
HEX = "ab" * 32


@pytest.fixture
def box() -> Sandbox:
    s = Sandbox()
    for org, roles in (("mfds", ["regulator"]), ("mfr", ["manufacturer"]), ("hosp", ["hospital"])):
        s.state.put(
            f"org/{org}", {"id": org, "name": org, "roles": roles, "since": 0, "status": "active"}
        )
    s.put_member("mfds.admin", "mfds", "admin")
    s.put_member("mfr.admin", "mfr", "admin")
    s.put_member("hosp.dr", "hosp", "practitioner")
    s.put_member("hosp.clerk", "hosp", "clerk")
    s.put_patient("pt-1")
    for org, gln, roles in (
        ("mfr", GLN, ["manufacturer"]),
        ("hosp", "8801234000048", ["dispenser"]),
    ):
        s.apply(
            "supply.set_partner@1",
            "mfds.admin",
            {
                "org": org,
                "roles": roles,
                "glns": [gln],
                "licence": "L",
                "expires": T + 10**9,
                "status": "active",
            },
            height=1,
            time=T,
        )
    s.apply(
        "supply.register_product@1",
        "mfr.admin",
        {"gtin": GTIN, "name": "Drug", "kind": "drug", "schedule": "II", "ndc": "12345-678-90"},
        height=2,
        time=T,
    )
    s.apply(
        "supply.register_product@1",
        "mfr.admin",
        {"gtin": DEVICE, "name": "Stent", "kind": "device", "schedule": "none"},
        height=2,
        time=T,
    )
    return s


def partner(**kw: Any) -> dict[str, Any]:
    return {
        "org": "mfr",
        "roles": ["manufacturer"],
        "glns": [GLN],
        "licence": "L",
        "expires": T + 1,
        "status": "active",
        **kw,
    }


CASES: list[tuple[str, str, str, dict[str, Any], str]] = [
    ("partner by non-regulator", "supply.set_partner@1", "mfr.admin", partner(), "unauthorized"),
    (
        "partner bad role",
        "supply.set_partner@1",
        "mfds.admin",
        partner(roles=["pirate"]),
        "bad_args",
    ),
    (
        "partner bad gln",
        "supply.set_partner@1",
        "mfds.admin",
        partner(glns=["8801234000018"]),
        "bad_args",
    ),
    (
        "partner gln taken",
        "supply.set_partner@1",
        "mfds.admin",
        partner(org="hosp"),
        "duplicate_gln",
    ),
    ("partner bad expiry", "supply.set_partner@1", "mfds.admin", partner(expires=0), "bad_args"),
    (
        "partner bad status",
        "supply.set_partner@1",
        "mfds.admin",
        partner(status="maybe"),
        "bad_args",
    ),
    (
        "partner unknown org",
        "supply.set_partner@1",
        "mfds.admin",
        partner(org="nobody"),
        "unknown_org",
    ),
    ("partner extra field", "supply.set_partner@1", "mfds.admin", partner(x=1), "bad_args"),
    (
        "product by non-manufacturer",
        "supply.register_product@1",
        "hosp.dr",
        {"gtin": GTIN, "name": "x", "kind": "drug", "schedule": "none"},
        "unauthorized_partner",
    ),
    (
        "product bad check digit",
        "supply.register_product@1",
        "mfr.admin",
        {
            "gtin": GTIN[:-1] + str((int(GTIN[-1]) + 1) % 10),
            "name": "x",
            "kind": "drug",
            "schedule": "none",
        },
        "bad_args",
    ),
    (
        "product bad kind",
        "supply.register_product@1",
        "mfr.admin",
        {"gtin": GTIN, "name": "x", "kind": "food", "schedule": "none"},
        "bad_args",
    ),
    (
        "product bad schedule",
        "supply.register_product@1",
        "mfr.admin",
        {"gtin": GTIN, "name": "x", "kind": "drug", "schedule": "VI"},
        "bad_args",
    ),
    (
        "product duplicate",
        "supply.register_product@1",
        "mfr.admin",
        {"gtin": GTIN, "name": "x", "kind": "drug", "schedule": "none"},
        "duplicate_product",
    ),
    (
        "product bad ndc",
        "supply.register_product@1",
        "mfr.admin",
        {"gtin": "0" * 13 + "0", "name": "x", "kind": "drug", "schedule": "none", "ndc": "1-2"},
        "bad_args",
    ),
    (
        "capture bad doc",
        "supply.capture@1",
        "mfr.admin",
        {"doc": "zz", "profile": "dscsa", "events": []},
        "bad_args",
    ),
    (
        "capture bad profile",
        "supply.capture@1",
        "mfr.admin",
        {"doc": HEX, "profile": "x", "events": []},
        "bad_args",
    ),
    (
        "capture no events",
        "supply.capture@1",
        "mfr.admin",
        {"doc": HEX, "profile": "dscsa", "events": []},
        "bad_args",
    ),
    (
        "capture bad event",
        "supply.capture@1",
        "mfr.admin",
        {"doc": HEX, "profile": "dscsa", "events": [{"id": "x"}]},
        "bad_args",
    ),
    (
        "capture bad epc",
        "supply.capture@1",
        "mfr.admin",
        {
            "doc": HEX,
            "profile": "dscsa",
            "events": [{"id": HEX, "type": "ObjectEvent", "time": T, "epcs": ["not a key"]}],
        },
        "bad_args",
    ),
    (
        "capture malformed serial run",
        "supply.capture@1",
        "mfr.admin",
        {
            "doc": HEX,
            "profile": "dscsa",
            "events": [
                {
                    "id": HEX,
                    "type": "ObjectEvent",
                    "time": T,
                    "epcs": ["01/" + GTIN + "/21/|~B~x~3"],
                }
            ],
        },
        "bad_args",
    ),
    (
        "capture oversized serial run",
        "supply.capture@1",
        "mfr.admin",
        {
            "doc": HEX,
            "profile": "dscsa",
            "events": [
                {
                    "id": HEX,
                    "type": "ObjectEvent",
                    "time": T,
                    "epcs": ["01/" + GTIN + "/21/|~B~0~99999999"],
                }
            ],
        },
        "bad_args",
    ),
    (
        "capture non-sgtin commissioning",
        "supply.capture@1",
        "mfr.admin",
        {
            "doc": HEX,
            "profile": "dscsa",
            "events": [
                {
                    "id": HEX,
                    "type": "ObjectEvent",
                    "time": T,
                    "action": "ADD",
                    "step": "commissioning",
                    "epcs": ["00/108801234000000015"],
                    "lot": "L",
                    "expiry": "2030-01-01",
                }
            ],
        },
        "bad_epc",
    ),
    (
        "ship to unknown GLN",
        "supply.capture@1",
        "mfr.admin",
        {
            "doc": HEX,
            "profile": "dscsa",
            "events": [
                {
                    "id": HEX,
                    "type": "ObjectEvent",
                    "time": T,
                    "step": "shipping",
                    "epcs": [],
                    "to": "0000000000000",
                }
            ],
        },
        "unknown_partner",
    ),
    (
        "ship without destination",
        "supply.capture@1",
        "mfr.admin",
        {
            "doc": HEX,
            "profile": "dscsa",
            "events": [
                {"id": HEX, "type": "ObjectEvent", "time": T, "step": "shipping", "epcs": []}
            ],
        },
        "missing_party",
    ),
    (
        "flag by a member",
        "supply.flag@1",
        "mfr.admin",
        {"items": ["01/" + GTIN + "/21/1"], "reason": "x", "evidence": HEX},
        "unauthorized",
    ),
    (
        "flag bad evidence",
        "supply.flag@1",
        "mfds.admin",
        {"items": ["01/" + GTIN + "/21/1"], "reason": "x", "evidence": "nope"},
        "bad_args",
    ),
    (
        "flag bad reason",
        "supply.flag@1",
        "mfds.admin",
        {"items": ["01/" + GTIN + "/21/1"], "reason": "Bad Reason", "evidence": HEX},
        "bad_args",
    ),
    (
        "flag no items",
        "supply.flag@1",
        "mfds.admin",
        {"items": [], "reason": "x", "evidence": HEX},
        "bad_args",
    ),
    (
        "investigate not suspect",
        "supply.investigate@1",
        "mfds.admin",
        {"item": "01/" + GTIN + "/21/1", "action": "investigate", "note": "n"},
        "not_suspect",
    ),
    (
        "investigate bad action",
        "supply.investigate@1",
        "mfds.admin",
        {"item": "01/" + GTIN + "/21/1", "action": "forget", "note": "n"},
        "bad_args",
    ),
    (
        "investigate by a member",
        "supply.investigate@1",
        "mfr.admin",
        {"item": "01/" + GTIN + "/21/1", "action": "investigate", "note": "n"},
        "unauthorized",
    ),
    (
        "recall unknown gtin",
        "supply.recall@1",
        "mfds.admin",
        {"gtin": "0" * 14, "lot": "L", "reason": "r"},
        "unknown_gtin",
    ),
    (
        "recall by another org",
        "supply.recall@1",
        "hosp.dr",
        {"gtin": GTIN, "lot": "L", "reason": "r"},
        "unauthorized",
    ),
    (
        "recall bad lot",
        "supply.recall@1",
        "mfds.admin",
        {"gtin": GTIN, "lot": "", "reason": "r"},
        "bad_args",
    ),
    (
        "implant by a clerk",
        "supply.implant@1",
        "hosp.clerk",
        {"item": "01/" + DEVICE + "/21/1", "patient": "pt-1"},
        "unauthorized",
    ),
    (
        "implant unknown patient",
        "supply.implant@1",
        "hosp.dr",
        {"item": "01/" + DEVICE + "/21/1", "patient": "pt-2"},
        "unknown_patient",
    ),
    (
        "implant unknown item",
        "supply.implant@1",
        "hosp.dr",
        {"item": "01/" + DEVICE + "/21/1", "patient": "pt-1"},
        "unknown_item",
    ),
]


@pytest.mark.parametrize(
    ("name", "kind", "sender", "args", "code"), CASES, ids=[c[0] for c in CASES]
)
def test_rejections(
    box: Sandbox, name: str, kind: str, sender: str, args: dict[str, Any], code: str
) -> None:
    with pytest.raises(ContractError) as exc:
        box.apply(kind, sender, args, height=5, time=T)
    assert exc.value.code == code, exc.value.message


def _commission(box: Sandbox, gtin: str, serial: str, epc_id: str = HEX) -> None:
    box.apply(
        "supply.capture@1",
        "mfr.admin",
        {
            "doc": HEX,
            "profile": "dscsa",
            "events": [
                {
                    "id": epc_id,
                    "type": "ObjectEvent",
                    "time": T,
                    "action": "ADD",
                    "step": "commissioning",
                    "epcs": [f"01/{gtin}/21/{serial}"],
                    "lot": "L1",
                    "expiry": "2030-01-01",
                }
            ],
        },
        height=6,
        time=T,
    )


def test_implant_needs_a_device_owned_here_and_records_it(box: Sandbox) -> None:
    _commission(box, GTIN, "7", "cd" * 32)
    with pytest.raises(ContractError) as exc:
        box.apply(
            "supply.implant@1",
            "hosp.dr",
            {"item": f"01/{GTIN}/21/7", "patient": "pt-1"},
            height=7,
            time=T,
        )
    assert exc.value.code == "not_a_device"
    _commission(box, DEVICE, "9")
    with pytest.raises(ContractError) as exc:  # still owned by the manufacturer
        box.apply(
            "supply.implant@1",
            "hosp.dr",
            {"item": f"01/{DEVICE}/21/9", "patient": "pt-1"},
            height=7,
            time=T,
        )
    assert exc.value.code == "not_owner"
    item = box.state.get(f"sc/item/01/{DEVICE}/21/9")
    box.state.put(f"sc/item/01/{DEVICE}/21/9", {**item, "owner": "hosp"})  # type: ignore[dict-item]
    box.apply(
        "supply.implant@1",
        "hosp.dr",
        {"item": f"01/{DEVICE}/21/9", "patient": "pt-1"},
        height=8,
        time=T,
    )
    assert box.state.get(f"sc/implant/{DEVICE}/L1/9")["patient"] == "pt-1"  # type: ignore[index]


def test_duplicate_event_hash_is_refused(box: Sandbox) -> None:
    _commission(box, GTIN, "1")
    with pytest.raises(ContractError) as exc:
        _commission(box, GTIN, "2")
    assert exc.value.code == "duplicate_event"

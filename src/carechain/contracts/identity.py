"""The identity contract: organisations, members, patients, keys; reusable permission checks.

State (all values canonical JSON)::

    org/<id>   {"id", "name", "roles": [..], "status": "active"|"removed", "since"}
    acct/<id>  {"id", "type": "admin"|"member"|"patient", "org"?, "role"?, "licence"?,
                "display"?, "capabilities"?: [..], "keys": [kid..], "status": "active", "since"}
    key/<kid>  {"account", "alg", "pub", "since", "status": "active"|"revoked"|"rotated",
                "revoked_at"?}
    node/<kid> {"org", "name", "alg", "pub", "status": "active"|"removed"}
    rules/identity {"open_registration": bool}   only when ``genesis.rules.identity`` is given
                                                   (absent: registration is closed)

Every organisation that runs nodes also gets a service account ``<org>.node`` (type
``member``, role ``service``) whose keys are its node keys, so a node can sign the audit
transactions of its organisation (transaction signatures are domain-separated from block seals
and checkpoint notes by their PAE type tag).

Invariants: a patient account holds no personal data, only its pseudonymous key(s), and its id is
derived from its first key (``pt-`` + 20 hex of the kid), so nobody can squat a patient's id;
key records are never deleted; an account's ``keys`` list only grows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from carechain.crypto.signatures import ALGORITHMS, get_scheme, key_id
from carechain.encoding import JsonValue, b64u_decode
from carechain.errors import ContractError, LedgerError, ValidationError
from carechain.ledger.execute import TxContext
from carechain.ledger.keys import key_state_key, node_state_key
from carechain.ledger.state import Overlay
from carechain.ledger.tx import ACCOUNT_RE, SignedTx

ORG_ROLES = (
    "auditor", "clinic", "dispenser", "hospital", "laboratory", "logistics", "manufacturer",
    "payer", "pharmacy", "regulator", "repackager", "research_sponsor", "wholesaler",
)  # fmt: skip
MEMBER_ROLES = (
    "admin", "auditor", "clerk", "device", "lab_technician", "nurse", "pharmacist",
    "practitioner", "researcher", "service",
)  # fmt: skip
CAPABILITIES = ("emergency", "privacy_officer")
"""Closed set of capabilities an admin may grant a member (``register_member@1``)."""
CAPABILITY_ROLES: dict[str, tuple[str, ...]] = {
    "emergency": ("nurse", "practitioner"),
    "privacy_officer": ("admin", "auditor", "clerk", "nurse", "practitioner"),
}
"""Roles that may carry each capability (people, never devices or services)."""
NODE_ACCOUNT_SUFFIX = ".node"
MAX_KEYS = 4
_TEXT_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,200}\Z")


# -- reusable permission checks ---------------------------------------------------------


def reject(code: str, message: str) -> ContractError:
    """Build a ContractError (``raise reject(...)``)."""
    return ContractError(message, code=code)


def get_account(state: Overlay, account: str) -> Mapping[str, Any]:
    """The active account ``account`` or a ``unknown_account`` rejection."""
    acct = state.get(f"acct/{account}")
    if not isinstance(acct, Mapping):
        raise reject("unknown_account", f"account {account} is not registered")
    if acct.get("status") != "active":
        raise reject("inactive_account", f"account {account} is {acct.get('status')}")
    return acct


def get_org(state: Overlay, org: str) -> Mapping[str, Any]:
    """The active organisation ``org`` or a rejection."""
    rec = state.get(f"org/{org}")
    if not isinstance(rec, Mapping):
        raise reject("unknown_org", f"organisation {org} is not registered")
    if rec.get("status") != "active":
        raise reject("inactive_org", f"organisation {org} is {rec.get('status')}")
    return rec


def require_role(state: Overlay, account: str, roles: Sequence[str]) -> Mapping[str, Any]:
    """The member account if its role is one of ``roles``, else ``unauthorized``."""
    acct = get_account(state, account)
    if acct.get("role") not in roles:
        raise reject(
            "unauthorized",
            f"account {account} has role {acct.get('role')!r}; one of {list(roles)} is required",
        )
    return acct


def require_org_admin(state: Overlay, account: str, org: str) -> None:
    """Reject unless ``account`` is an administrator of active organisation ``org``."""
    get_org(state, org)
    acct = get_account(state, account)
    if acct.get("role") != "admin" or acct.get("org") != org:
        raise reject("unauthorized", f"account {account} is not an administrator of {org}")


def is_patient(state: Overlay, account: str) -> bool:
    """True iff ``account`` is an active patient account."""
    acct = state.get(f"acct/{account}")
    return (
        isinstance(acct, Mapping)
        and acct.get("type") == "patient"
        and acct.get("status") == "active"
    )


def has_capability(acct: Mapping[str, Any], capability: str) -> bool:
    """True iff the account record ``acct`` carries ``capability``."""
    caps = acct.get("capabilities")
    return isinstance(caps, list) and capability in caps


def node_account_id(org: str) -> str:
    """The service account through which the nodes of ``org`` sign (``<org>.node``)."""
    return f"{org}{NODE_ACCOUNT_SUFFIX}"


def patient_account_id(kid: str) -> str:
    """The account id of a patient whose first key has id ``kid``."""
    return f"pt-{kid[:20]}"


# -- argument parsing -------------------------------------------------------------------


def arg(args: Mapping[str, Any], name: str, typ: type, *, optional: bool = False) -> Any:
    """Fetch ``args[name]`` of type ``typ`` or reject with ``bad_args``."""
    if name not in args:
        if optional:
            return None
        raise reject("bad_args", f"args.{name} is required")
    value = args[name]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise reject("bad_args", f"args.{name} must be a {typ.__name__}")
    return value


def only_fields(args: Mapping[str, Any], allowed: set[str]) -> None:
    """Reject unknown argument fields."""
    unknown = set(args) - allowed
    if unknown:
        raise reject("bad_args", f"unknown args field(s) {sorted(unknown)}")


def text(args: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
    """A short printable text argument."""
    value = arg(args, name, str, optional=optional)
    if value is not None and not _TEXT_RE.match(value):
        raise reject("bad_args", f"args.{name} must be 1-200 printable characters")
    return value  # type: ignore[no-any-return]


def account_arg(args: Mapping[str, Any], name: str) -> str:
    """An account-id argument."""
    value: str = arg(args, name, str)
    if not ACCOUNT_RE.match(value):
        raise reject("bad_args", f"args.{name}: {value!r} is not an account id")
    return value


def parse_keys(raw: object, where: str = "args.keys") -> list[tuple[str, bytes, str]]:
    """Parse ``[{"alg", "pub"}]`` into ``(alg, pub, kid)``; reject malformed entries."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_KEYS:
        raise reject("bad_args", f"{where} must list 1 to {MAX_KEYS} keys")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or set(entry) != {"alg", "pub"}:
            raise reject("bad_args", f"{where}[{i}] must be exactly {{alg, pub}}")
        alg = entry["alg"]
        if alg not in ALGORITHMS:
            raise reject("bad_args", f"{where}[{i}].alg {alg!r} is not supported")
        try:
            pub = b64u_decode(entry["pub"], what=f"{where}[{i}].pub", max_bytes=4096)
        except ValidationError as exc:
            raise reject("bad_args", str(exc)) from None
        if len(pub) != get_scheme(alg).public_key_size:
            raise reject("bad_args", f"{where}[{i}].pub has the wrong length for {alg}")
        out.append((alg, pub, key_id(alg, pub)))
    if len({k for _, _, k in out}) != len(out):
        raise reject("bad_args", f"{where} lists the same key twice")
    return out


def _put_keys(
    state: Overlay, account: str, keys: list[tuple[str, bytes, str]], height: int
) -> list[str]:
    from carechain.encoding import b64u_encode

    kids = []
    for alg, pub, kid in keys:
        if state.get(key_state_key(kid)) is not None:
            raise reject("duplicate_key", f"key {kid} is already registered")
        state.put(
            key_state_key(kid),
            {
                "account": account,
                "alg": alg,
                "pub": b64u_encode(pub),
                "since": height,
                "status": "active",
            },
        )
        kids.append(kid)
    return kids


# -- genesis ----------------------------------------------------------------------------


def write_org(state: Overlay, org: Mapping[str, Any], height: int) -> None:
    """Write an organisation with its admins and node keys (genesis or admission)."""
    from carechain.encoding import b64u_encode

    if not isinstance(org, Mapping):
        raise reject("bad_args", "organisation must be an object")
    only_fields(org, {"id", "name", "roles", "admins", "nodes"})
    org_id = account_arg(org, "id")
    name = text(org, "name")
    roles = arg(org, "roles", list)
    if not roles or any(r not in ORG_ROLES for r in roles) or len(set(roles)) != len(roles):
        raise reject(
            "bad_args", f"organisation {org_id}: roles must be distinct values of {list(ORG_ROLES)}"
        )
    if state.get(f"org/{org_id}") is not None:
        raise reject("duplicate_org", f"organisation {org_id} already exists")
    state.put(
        f"org/{org_id}",
        {
            "id": org_id,
            "name": name or org_id,
            "roles": sorted(roles),
            "since": height,
            "status": "active",
        },
    )
    admins = arg(org, "admins", list)
    if not admins:
        raise reject("bad_args", f"organisation {org_id} needs at least one admin")
    for admin in admins:
        if not isinstance(admin, Mapping):
            raise reject("bad_args", "admin must be an object")
        only_fields(admin, {"account", "keys"})
        account = account_arg(admin, "account")
        _not_reserved(account)
        if state.get(f"acct/{account}") is not None:
            raise reject("duplicate_account", f"account {account} already exists")
        kids = _put_keys(state, account, parse_keys(admin.get("keys"), f"{account}.keys"), height)
        state.put(
            f"acct/{account}",
            {
                "id": account,
                "keys": kids,
                "org": org_id,
                "role": "admin",
                "since": height,
                "status": "active",
                "type": "admin",
            },
        )
    node_keys: list[tuple[str, bytes, str]] = []
    for node in arg(org, "nodes", list, optional=True) or []:
        if not isinstance(node, Mapping):
            raise reject("bad_args", "node must be an object")
        only_fields(node, {"name", "alg", "pub"})
        ((alg, pub, kid),) = parse_keys([{"alg": node.get("alg"), "pub": node.get("pub")}], "node")
        if state.get(node_state_key(kid)) is not None:
            raise reject("duplicate_key", f"node key {kid} is already registered")
        node_keys.append((alg, pub, kid))
        state.put(
            node_state_key(kid),
            {
                "alg": alg,
                "name": text(node, "name") or kid,
                "org": org_id,
                "pub": b64u_encode(pub),
                "status": "active",
            },
        )
    if node_keys:
        _write_node_account(state, org_id, node_keys, height)


def _not_reserved(account: str) -> None:
    if account.endswith(NODE_ACCOUNT_SUFFIX):
        raise reject(
            "bad_args",
            f"account ids ending in {NODE_ACCOUNT_SUFFIX!r} are reserved for node service accounts",
        )


def _write_node_account(
    state: Overlay, org_id: str, node_keys: list[tuple[str, bytes, str]], height: int
) -> None:
    """The service account ``<org>.node`` whose account keys are the org's node keys."""
    account = node_account_id(org_id)
    if not ACCOUNT_RE.match(account):
        raise reject("bad_args", f"organisation id {org_id!r} is too long for {account!r}")
    if state.get(f"acct/{account}") is not None:
        raise reject("duplicate_account", f"account {account} already exists")
    kids = _put_keys(state, account, node_keys, height)
    state.put(
        f"acct/{account}",
        {
            "id": account, "keys": kids, "org": org_id, "role": "service", "since": height,
            "status": "active", "type": "member",
        },
    )  # fmt: skip


def apply_genesis(state: Overlay, doc: Mapping[str, Any]) -> None:
    """Write the founding organisations (a rejection here is a ValidationError)."""
    orgs = doc.get("orgs")
    if not isinstance(orgs, list) or not orgs:
        raise ValidationError("genesis.orgs: want at least one organisation")
    try:
        for org in orgs:
            write_org(state, org, 0)
    except ContractError as exc:
        raise ValidationError(f"genesis.orgs: {exc.message}") from None
    if not any(state.get(k) for k, _ in state.iter_written("node/")):
        raise ValidationError("genesis.orgs: at least one organisation must list a node key")


# -- handlers ---------------------------------------------------------------------------


def register_patient(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``identity.register_patient@1``: a patient self-registers with a pseudonymous key.

    args: ``{"keys": [{"alg", "pub"}]}``; sender = ``patient_account_id(kid of keys[0])``;
    every listed key must sign (proof of possession). No personal data is accepted.
    """
    args = tx.body.args
    only_fields(args, {"keys"})
    keys = parse_keys(args.get("keys"))
    sender = tx.body.sender
    want = patient_account_id(keys[0][2])
    if sender != want:
        raise reject(
            "bad_args", f"a patient's account id is derived from its first key: want {want}"
        )
    if {s.kid for s in tx.body.signers} != {k for _, _, k in keys}:
        raise reject("unauthorized", "every key of a new patient must sign its registration")
    if state.get(f"acct/{sender}") is not None:
        raise reject("duplicate_account", f"account {sender} already exists")
    kids = _put_keys(state, sender, keys, ctx.height)
    state.put(
        f"acct/{sender}",
        {"id": sender, "keys": kids, "since": ctx.height, "status": "active", "type": "patient"},
    )
    ctx.emit("identity.patient_registered", {"account": sender})


def register_member(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``identity.register_member@1``: an org admin registers a practitioner, service, device…

    args: ``{"account", "org", "role", "keys": [..], "licence"?, "display"?,
    "capabilities"?: [..]}``; capabilities come from :data:`CAPABILITIES`, each allowed only
    for the roles in :data:`CAPABILITY_ROLES`, and are stored sorted.
    """
    args = tx.body.args
    only_fields(args, {"account", "org", "role", "keys", "licence", "display", "capabilities"})
    org = account_arg(args, "org")
    require_org_admin(state, tx.body.sender, org)
    account = account_arg(args, "account")
    _not_reserved(account)
    role = arg(args, "role", str)
    if role not in MEMBER_ROLES:
        raise reject("bad_args", f"args.role {role!r} is not one of {list(MEMBER_ROLES)}")
    capabilities = _capabilities(args, role)
    if state.get(f"acct/{account}") is not None:
        raise reject("duplicate_account", f"account {account} already exists")
    kids = _put_keys(state, account, parse_keys(args.get("keys")), ctx.height)
    record: dict[str, JsonValue] = {
        "id": account, "keys": kids, "org": org, "role": role, "since": ctx.height,
        "status": "active", "type": "admin" if role == "admin" else "member",
    }  # fmt: skip
    for opt in ("licence", "display"):
        value = text(args, opt, optional=True)
        if value is not None:
            record[opt] = value
    if capabilities:
        record["capabilities"] = list(capabilities)
    state.put(f"acct/{account}", record)
    ctx.touch(account)
    ctx.emit("identity.member_registered", {"account": account, "org": org, "role": role})


def _capabilities(args: Mapping[str, Any], role: str) -> tuple[str, ...]:
    raw = arg(args, "capabilities", list, optional=True)
    if raw is None:
        return ()
    if any(not isinstance(c, str) or c not in CAPABILITIES for c in raw):
        raise reject("bad_args", f"args.capabilities: each must be one of {list(CAPABILITIES)}")
    if len(set(raw)) != len(raw):
        raise reject("bad_args", "args.capabilities lists a capability twice")
    for cap in raw:
        if role not in CAPABILITY_ROLES[cap]:
            raise reject(
                "bad_args",
                f"capability {cap!r} is for roles {list(CAPABILITY_ROLES[cap])}, not {role!r}",
            )
    return tuple(sorted(raw))


def rotate_key(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``identity.rotate_key@1``: the old key authorises its replacement.

    args: ``{"old": kid, "keys": [{"alg", "pub"}]}`` (one new key); signers: the old key and
    the new key (proof of possession). The old key is ``rotated`` from this block on.
    """
    args = tx.body.args
    only_fields(args, {"old", "keys"})
    old = arg(args, "old", str)
    keys = parse_keys(args.get("keys"))
    if len(keys) != 1:
        raise reject("bad_args", "args.keys must hold exactly one new key")
    alg, pub, new_kid = keys[0]
    if [s.kid for s in tx.body.signers] != [old, new_kid]:
        raise reject("unauthorized", "a rotation is signed by the old key, then the new key")
    sender = tx.body.sender
    old_rec = state.get(key_state_key(old))
    if not isinstance(old_rec, Mapping) or old_rec.get("account") != sender:
        raise reject("unauthorized", f"key {old} does not belong to {sender}")
    _put_keys(state, sender, [(alg, pub, new_kid)], ctx.height)
    state.put(key_state_key(old), {**old_rec, "revoked_at": ctx.height, "status": "rotated"})
    acct = dict(get_account(state, sender))
    acct["keys"] = [*acct["keys"], new_kid]
    state.put(f"acct/{sender}", acct)
    ctx.emit("identity.key_rotated", {"account": sender, "new": new_kid, "old": old})


def revoke_key(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``identity.revoke_key@1``: the owner, or an admin of the owner's org, revokes a key.

    args: ``{"kid", "reason"}``. Effective from this block: later transactions (also later in
    the same block) signed by it are rejected.
    """
    args = tx.body.args
    only_fields(args, {"kid", "reason"})
    kid = arg(args, "kid", str)
    reason = text(args, "reason")
    rec = state.get(key_state_key(kid))
    if not isinstance(rec, Mapping):
        raise reject("unknown_key", f"key {kid} is not registered")
    owner = str(rec["account"])
    sender = tx.body.sender
    if owner != sender:
        owner_acct = get_account(state, owner)
        org = owner_acct.get("org")
        if not isinstance(org, str):
            raise reject("unauthorized", f"only {owner} may revoke its own key")
        require_org_admin(state, sender, org)
    if rec.get("status") != "active":
        raise reject("already_revoked", f"key {kid} is already {rec.get('status')}")
    state.put(
        key_state_key(kid),
        {**rec, "reason": reason or "", "revoked_at": ctx.height, "status": "revoked"},
    )
    ctx.touch(owner)
    ctx.emit("identity.key_revoked", {"account": owner, "kid": kid})


OPEN_REGISTRATION_DENIED_ROLES = ("auditor", "regulator")
"""Oversight roles an organisation can never give itself, even on a public chain."""


def validate_identity_rules(rules: Mapping[str, Any]) -> Mapping[str, Any]:
    """``genesis.rules.identity`` → the complete ``rules/identity`` (ADR 0012)."""
    unknown = set(rules) - {"open_registration"}
    if unknown:
        raise ValidationError(f"rules.identity: unknown field(s) {sorted(unknown)}")
    value = rules.get("open_registration", False)
    if not isinstance(value, bool):
        raise ValidationError("rules.identity.open_registration: want true or false")
    return {"open_registration": value}


def _identity_genesis(state: Overlay, doc: Mapping[str, Any]) -> None:
    """Write ``rules/identity`` only when the genesis names it (other chains' state roots, hence
    genesis hashes, stay as they were)."""
    from carechain.contracts.registry import genesis_rules

    rules = doc.get("rules")
    if isinstance(rules, Mapping) and "identity" in rules:
        state.put("rules/identity", dict(validate_identity_rules(genesis_rules(doc, "identity"))))


def register_org(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``identity.register_org@1``: open registration (public chains, ADR 0012).

    Anyone may found an organisation, without the consortium's admission vote, when
    ``rules/identity.open_registration`` is true. args: ``{"id", "name", "roles", "keys"}``;
    sender = ``<id>.admin`` (the new admin account); every listed key signs (proof of
    possession). Oversight roles (:data:`OPEN_REGISTRATION_DENIED_ROLES`) and node keys are
    refused: the organisation cannot audit others nor seal blocks.
    """
    rules = state.get("rules/identity")
    if not isinstance(rules, Mapping) or rules.get("open_registration") is not True:
        raise reject("registration_closed", "this chain admits organisations by governance vote")
    args = tx.body.args
    only_fields(args, {"id", "name", "roles", "keys"})
    org = account_arg(args, "id")
    if tx.body.sender != f"{org}.admin":
        raise reject("bad_args", f"the sender must be the new admin account {org}.admin")
    roles = arg(args, "roles", list)
    denied = sorted(set(roles) & set(OPEN_REGISTRATION_DENIED_ROLES))
    if denied:
        raise reject("unauthorized", f"roles {denied} need the consortium's admission vote")
    keys = parse_keys(args.get("keys"))
    if {s.kid for s in tx.body.signers} != {k for _, _, k in keys}:
        raise reject("unauthorized", "every key of the new admin must sign the registration")
    if state.get(f"acct/{tx.body.sender}") is not None:
        raise reject("duplicate_account", f"account {tx.body.sender} already exists")
    doc = {"admins": [{"account": tx.body.sender, "keys": args["keys"]}], "id": org,
           "name": args.get("name"), "roles": roles}  # fmt: skip
    write_org(state, doc, ctx.height)
    ctx.touch(tx.body.sender)
    ctx.emit("identity.org_registered", {"org": org, "roles": sorted(roles)})


def register(registry: Any) -> None:
    """Register the identity kinds."""
    registry.register(
        "identity.register_org@1", register_org, introduces_keys=True, new_sender=True
    )
    registry.rule_section("identity", validate_identity_rules)
    registry.on_genesis(_identity_genesis)
    registry.register(
        "identity.register_patient@1", register_patient, introduces_keys=True, new_sender=True
    )
    registry.register("identity.register_member@1", register_member)
    registry.register("identity.rotate_key@1", rotate_key, introduces_keys=True)
    registry.register("identity.revoke_key@1", revoke_key)
    registry.on_genesis(apply_genesis)


__all__ = [
    "CAPABILITIES",
    "LedgerError",
    "get_account",
    "get_org",
    "has_capability",
    "is_patient",
    "node_account_id",
    "patient_account_id",
    "register",
    "require_org_admin",
    "require_role",
]

"""Governance: admission and removal of organisations, and changes of a contract's rules, by
a majority vote of the organisations' admins.

State::

    gov/<proposal id> {"id", "action": "admit_org"|"remove_org", "org": {...} | "<org id>",
                       "proposer", "votes": {"<org id>": true|false}, "status":
                       "open"|"effected"|"rejected", "opened"}
    gov/<proposal id> {"id", "action": "set_rules", "section", "rules": {...}, "proposer",
                       "votes", "status", "opened", "effective"?}
    gov/rules/<section> [{"height", "proposal"}, ..]   rules changes of a section, in order
    rules/<section>   the rules in force (written at genesis by the owning contract)

``set_rules`` replaces ``rules/<section>`` of any section a contract declared with a validator
(``registry.rule_section(section, validator)``): ``args.rules`` has the shape of
``genesis.rules.<section>`` and is validated by that validator when proposed (``unknown_section``,
``rules_not_governed``, ``invalid_rules``); the proposal keeps the complete validated rules, so
voters see exactly what would be in force. They apply from the transaction whose vote passes:
later transactions of that block and every later block read them (``effective`` = that height).

One vote per active organisation, cast by any of its admins; the proposer's organisation votes
yes. The proposal takes effect in the block where yes votes exceed half of the active
organisations (counted at that moment), and is rejected once that can no longer happen.
The proposal id is the first 16 hex digits of the proposing transaction's id.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from carechain.contracts.identity import (
    arg,
    get_account,
    get_org,
    only_fields,
    reject,
    require_org_admin,
    write_org,
)
from carechain.contracts.registry import ContractRegistry
from carechain.errors import ValidationError
from carechain.ledger.execute import TxContext
from carechain.ledger.keys import node_state_key
from carechain.ledger.state import Overlay
from carechain.ledger.tx import SignedTx


def _active_orgs(state: Overlay) -> list[str]:
    index = state.get("gov/orgs")
    return list(index) if isinstance(index, list) else []


def _admin_org(state: Overlay, account: str) -> str:
    acct = get_account(state, account)
    org = acct.get("org")
    if acct.get("role") != "admin" or not isinstance(org, str):
        raise reject("unauthorized", f"{account} is not an organisation administrator")
    require_org_admin(state, account, org)
    return org


def _tally(state: Overlay, prop: dict[str, Any], ctx: TxContext) -> None:
    orgs = _active_orgs(state)
    votes = {o: v for o, v in prop["votes"].items() if o in orgs}
    yes = sum(1 for v in votes.values() if v)
    no = sum(1 for v in votes.values() if not v)
    if 2 * yes > len(orgs):
        _effect(state, prop, ctx)
        prop["status"] = "effected"
    elif 2 * (len(orgs) - no) <= len(orgs):
        prop["status"] = "rejected"
    if prop["status"] != "open":
        ctx.emit(f"governance.{prop['status']}", {"action": prop["action"], "proposal": prop["id"]})


def _require_another_node(state: Overlay, org_id: str) -> None:
    """Reject removing ``org_id`` when no other active organisation runs an active node:
    the chain would have nobody left to seal blocks."""
    for other in _active_orgs(state):
        if other == org_id:
            continue
        kids = state.get(f"gov/nodes/{other}")
        for kid in kids if isinstance(kids, list) else []:
            node = state.get(node_state_key(str(kid)))
            if isinstance(node, Mapping) and node.get("status") == "active":
                return
    raise reject(
        "last_node",
        f"removing {org_id} would leave no active node to seal blocks; admit another "
        "organisation with a node first",
    )


def _effect(state: Overlay, prop: Mapping[str, Any], ctx: TxContext) -> None:
    orgs = _active_orgs(state)
    if prop["action"] == "set_rules":
        section = str(prop["section"])
        state.put(f"rules/{section}", prop["rules"])
        history = state.get(f"gov/rules/{section}")
        entry = {"height": ctx.height, "proposal": prop["id"]}
        state.put(f"gov/rules/{section}", [*(history if isinstance(history, list) else []), entry])
        prop["effective"] = ctx.height  # type: ignore[index]
    elif prop["action"] == "admit_org":
        write_org(state, prop["org"], ctx.height)
        _index_nodes(state, prop["org"])
        state.put("gov/orgs", sorted([*orgs, prop["org"]["id"]]))
    else:
        org_id = prop["org"]
        _require_another_node(state, org_id)
        rec = dict(get_org(state, org_id))
        rec["status"] = "removed"
        state.put(f"org/{org_id}", rec)
        state.put("gov/orgs", [o for o in orgs if o != org_id])
        nodes = state.get(f"gov/nodes/{org_id}")
        for kid in nodes if isinstance(nodes, list) else []:
            node = state.get(node_state_key(kid))
            if isinstance(node, Mapping):
                state.put(node_state_key(kid), {**node, "status": "removed"})


def _validated_rules(
    registry: ContractRegistry | None, args: Mapping[str, Any]
) -> tuple[str, Mapping[str, Any]]:
    """(section, complete rules) of a ``set_rules`` proposal, validated by the section's
    owning contract."""
    only_fields(args, {"action", "section", "rules"})
    section = arg(args, "section", str)
    if registry is None or section not in registry.rule_sections():
        known = list(registry.rule_sections()) if registry is not None else []
        raise reject("unknown_section", f"no contract declares rules {section!r}; known: {known}")
    validator = registry.rule_validator(section)
    if validator is None:
        raise reject(
            "rules_not_governed", f"the rules {section!r} are set at genesis only (no validator)"
        )
    try:
        return section, validator(arg(args, "rules", Mapping))
    except ValidationError as exc:
        raise reject("invalid_rules", f"rules {section!r} refused: {exc.message}") from None


def propose(
    state: Overlay, tx: SignedTx, ctx: TxContext, *, registry: ContractRegistry | None = None
) -> None:
    """``governance.propose@1``: ``{"action": "admit_org", "org": {...}}``,
    ``{"action": "remove_org", "org": "<id>"}`` or ``{"action": "set_rules", "section",
    "rules": {...}}`` (``registry``: where the rules sections and their validators are)."""
    args = tx.body.args
    only_fields(args, {"action", "org", "section", "rules"})
    voter_org = _admin_org(state, tx.body.sender)
    action = arg(args, "action", str)
    if action in ("admit_org", "remove_org"):
        only_fields(args, {"action", "org"})
    if action == "set_rules":
        section, rules = _validated_rules(registry, args)
    elif action == "admit_org":
        org = arg(args, "org", Mapping)
        probe = state.child()
        write_org(probe, org, ctx.height)  # validate now; written again on effect
    elif action == "remove_org":
        org_id = arg(args, "org", str)
        get_org(state, org_id)
        _require_another_node(state, org_id)
    else:
        raise reject("bad_args", "args.action must be admit_org, remove_org or set_rules")
    pid = tx.tx_id.hex()[:16]
    prop: dict[str, Any] = {
        "action": action, "id": pid, "opened": ctx.height,
        "proposer": tx.body.sender, "status": "open", "votes": {voter_org: True},
    }  # fmt: skip
    if action == "set_rules":
        prop.update(section=section, rules=dict(rules))
    else:
        prop["org"] = args["org"]
    ctx.emit("governance.proposed", {"action": action, "proposal": pid})
    _tally(state, prop, ctx)
    state.put(f"gov/{pid}", prop)


def vote(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``governance.vote@1``: ``{"proposal": id, "approve": bool}``, one vote per org."""
    args = tx.body.args
    only_fields(args, {"proposal", "approve"})
    voter_org = _admin_org(state, tx.body.sender)
    pid = arg(args, "proposal", str)
    raw = state.get(f"gov/{pid}") if pid.isalnum() else None
    if not isinstance(raw, Mapping):
        raise reject("unknown_proposal", f"proposal {pid} does not exist")
    prop: dict[str, Any] = dict(raw)
    if prop["status"] != "open":
        raise reject("proposal_closed", f"proposal {pid} is already {prop['status']}")
    if voter_org in prop["votes"]:
        raise reject("already_voted", f"organisation {voter_org} already voted on {pid}")
    prop["votes"] = {**prop["votes"], voter_org: arg(args, "approve", bool)}
    ctx.emit("governance.voted", {"org": voter_org, "proposal": pid})
    _tally(state, prop, ctx)
    state.put(f"gov/{pid}", prop)


def apply_genesis(state: Overlay, doc: Mapping[str, Any]) -> None:
    """Index the founding organisations and their node keys for vote counting."""
    orgs = [o["id"] for o in doc["orgs"]]
    state.put("gov/orgs", sorted(orgs))
    for org in doc["orgs"]:
        _index_nodes(state, org)


def _index_nodes(state: Overlay, org: Mapping[str, Any]) -> None:
    from carechain.contracts.identity import parse_keys

    kids = [
        parse_keys([{"alg": n["alg"], "pub": n["pub"]}], "node")[0][2] for n in org.get("nodes", [])
    ]
    state.put(f"gov/nodes/{org['id']}", kids)


def register(registry: Any) -> None:
    """Register the governance kinds."""
    registry.register("governance.propose@1", partial(propose, registry=registry))
    registry.register("governance.vote@1", vote)
    registry.on_genesis(apply_genesis)

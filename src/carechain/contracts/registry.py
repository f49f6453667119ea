"""The explicit registry from transaction kind to contract handler.

A :class:`ContractRegistry` is what ``ledger.execute`` calls: ``handler(kind)`` and
``authorize(state, tx, ctx)``; it also writes the genesis state. Registration is explicit
(``registry.register(kind, handler)``): no discovery, no plug-ins.

``authorize`` (the generic signer rule, before any handler runs):

1. the sender account exists and is active, and its organisation (if any) is active;
2. every signer key is registered, ``active``, of the signed algorithm, belongs to the sender,
   and was registered in an earlier block; EXCEPT keys the kind declares it introduces
   (``introduces_keys``), which the handler itself binds to the sender.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from carechain.errors import ContractError, ValidationError
from carechain.ledger.execute import Handler, TxContext
from carechain.ledger.keys import key_state_key
from carechain.ledger.state import Overlay
from carechain.ledger.tx import SignedTx

RulesValidator = Callable[[Mapping[str, Any]], Mapping[str, Any]]
"""A contract's rules validator: a ``genesis.rules.<section>``-shaped mapping → the complete
rules written to ``rules/<section>`` (ValidationError naming the bad field)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KindSpec:
    """How one transaction kind is handled."""

    handler: Handler
    """Applies the transaction (raises ContractError to reject)."""
    introduces_keys: bool = False
    """Signers may include keys carried in ``args.keys`` (proof of possession)."""
    new_sender: bool = False
    """The sender account is created by this transaction (self-registration)."""


class ContractRegistry:
    """Kinds → handlers, plus the generic authorisation rule and genesis."""

    def __init__(self) -> None:
        self._kinds: dict[str, KindSpec] = {}
        self._genesis: list[Any] = []
        self._rule_sections: set[str] = set()
        self._rule_validators: dict[str, RulesValidator] = {}

    def register(self, kind: str, handler: Handler, **flags: bool) -> None:
        """Register ``handler`` for ``kind`` (``contract.action@version``)."""
        if kind in self._kinds:
            raise ValueError(f"kind {kind} registered twice")  # a programming error
        self._kinds[kind] = KindSpec(handler=handler, **flags)

    def on_genesis(self, fn: Any) -> None:
        """Add a genesis writer ``fn(state, doc)``; writers run in registration order."""
        self._genesis.append(fn)

    def rule_section(self, section: str, validator: RulesValidator | None = None) -> None:
        """Declare that a contract reads ``genesis.rules.<section>`` (others are refused).

        With ``validator`` the consortium may later replace ``rules/<section>`` by a
        governance vote (``governance.propose@1`` action ``set_rules``)."""
        self._rule_sections.add(section)
        if validator is not None:
            self._rule_validators[section] = validator

    def rule_sections(self) -> tuple[str, ...]:
        """Every declared rules section, sorted."""
        return tuple(sorted(self._rule_sections))

    def rule_validator(self, section: str) -> RulesValidator | None:
        """The validator of a declared ``section`` (None: not changeable by governance)."""
        return self._rule_validators.get(section)

    def kinds(self) -> tuple[str, ...]:
        """Every registered kind, sorted."""
        return tuple(sorted(self._kinds))

    def handler(self, kind: str) -> Handler | None:
        spec = self._kinds.get(kind)
        return None if spec is None else spec.handler

    def apply_genesis(self, state: Overlay, doc: Mapping[str, Any]) -> None:
        rules = doc.get("rules", {})
        if not isinstance(rules, Mapping):
            raise ValidationError("genesis.rules: want an object of contract sections")
        unknown = set(rules) - self._rule_sections
        if unknown:
            raise ValidationError(
                f"genesis.rules: unknown section(s) {sorted(unknown)}; "
                f"known: {sorted(self._rule_sections)}"
            )
        for fn in self._genesis:
            fn(state, doc)

    def authorize(self, state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
        spec = self._kinds[tx.body.kind]
        sender = tx.body.sender
        introduced: set[str] = set()
        if spec.introduces_keys:
            from carechain.ledger.keys import introduced_keys

            introduced = set(introduced_keys(tx))
        if not spec.new_sender:  # step 1
            acct = state.get(f"acct/{sender}")
            if not isinstance(acct, Mapping):
                raise ContractError(
                    f"sender {sender} is not a registered account", code="unknown_account"
                )
            if acct.get("status") != "active":
                raise ContractError(
                    f"sender {sender} is {acct.get('status')}", code="inactive_account"
                )
            org_id = acct.get("org")
            if isinstance(org_id, str):
                org = state.get(f"org/{org_id}")
                if not isinstance(org, Mapping) or org.get("status") != "active":
                    raise ContractError(f"organisation {org_id} is not active", code="inactive_org")
        for signer in tx.body.signers:  # step 2
            rec = state.get(key_state_key(signer.kid))
            if rec is None:
                if signer.kid in introduced:
                    continue
                raise ContractError(f"key {signer.kid} is not registered", code="unknown_key")
            assert isinstance(rec, Mapping)
            if rec.get("status") != "active":
                raise ContractError(
                    f"key {signer.kid} is {rec.get('status')} "
                    f"(since block {rec.get('revoked_at')})",
                    code="revoked_key",
                )
            if rec.get("alg") != signer.alg:
                raise ContractError(
                    f"key {signer.kid} is not a {signer.alg} key", code="wrong_algorithm"
                )
            if rec.get("account") != sender:
                raise ContractError(
                    f"key {signer.kid} belongs to {rec.get('account')}, not to sender {sender}",
                    code="unauthorized",
                )
            since = rec.get("since")
            if isinstance(since, int) and since >= ctx.height:
                raise ContractError(
                    f"key {signer.kid} was registered in this block; it may sign from the next",
                    code="key_not_yet_valid",
                )


def genesis_rules(doc: Mapping[str, Any], section: str) -> Mapping[str, Any]:
    """``genesis.rules.<section>`` (an empty mapping when absent); ValidationError if not an
    object. Each contract validates the fields of its own section."""
    rules = doc.get("rules", {})
    value = rules.get(section, {}) if isinstance(rules, Mapping) else {}
    if not isinstance(value, Mapping):
        raise ValidationError(f"genesis.rules.{section}: want an object")
    return value

"""Deterministic contracts: kind → ``apply(state, tx, ctx)``, in an explicit registry."""

from carechain.contracts import (
    access,
    audit,
    claims,
    consent,
    credentials,
    governance,
    identity,
    incentives,
    prescriptions,
    records,
    supply,
    trials,
)
from carechain.contracts.registry import ContractRegistry


def default_contracts() -> ContractRegistry:
    """The registry with every contract carechain ships."""
    registry = ContractRegistry()
    identity.register(registry)
    governance.register(registry)
    records.register(registry)
    consent.register(registry)
    access.register(registry)
    audit.register(registry)
    claims.register(registry)
    trials.register(registry)
    incentives.register(registry)
    credentials.register(registry)
    prescriptions.register(registry)
    supply.register(registry)
    return registry


__all__ = ["ContractRegistry", "default_contracts"]

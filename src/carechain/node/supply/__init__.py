"""The node's supply-chain service (``service``) and demo seeding and walk-through (``demo``)."""

from carechain.node.supply.service import (
    CUSTODY_CODES,
    CaptureOutcome,
    SupplyService,
    Verification,
    item_timeline,
    open_supply_service,
    sgtin_item,
)

__all__ = [
    "CUSTODY_CODES",
    "CaptureOutcome",
    "SupplyService",
    "Verification",
    "item_timeline",
    "open_supply_service",
    "sgtin_item",
]

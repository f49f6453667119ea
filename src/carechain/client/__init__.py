"""The carechain Python SDK: build and sign transactions, submit them, verify what nodes say.

Trust comes from the genesis document only (given, or fetched once and pinned); checkpoints
are verified against its node keys and only move forward along consistency proofs; inclusion
and consistency proofs are checked locally. See :class:`Client`.

The SDK depends on ``carechain.{errors, encoding, crypto, merkle, ledger}`` and ``httpx``
only, never on the node, storage or API packages.
"""

from carechain.client._http import error_from_problem
from carechain.client.client import (
    DEFAULT_URL,
    URL_ENV,
    Client,
    ConsistencyResult,
    InclusionResult,
    default_url,
)
from carechain.client.models import Block, BlockTx, ChainInfo, Result, TxRecord
from carechain.client.records import (
    AuditReport,
    EntryCheck,
    FhirResult,
    RecordsClient,
    error_from_outcome,
)
from carechain.client.rx import RxClient
from carechain.client.trust import NodeKey, TrustedCheckpoint, TrustRoot, TrustStore, parse_genesis
from carechain.merkle import Checkpoint

__all__ = [
    "DEFAULT_URL",
    "URL_ENV",
    "AuditReport",
    "Block",
    "BlockTx",
    "ChainInfo",
    "Checkpoint",
    "Client",
    "ConsistencyResult",
    "EntryCheck",
    "FhirResult",
    "InclusionResult",
    "NodeKey",
    "RecordsClient",
    "Result",
    "RxClient",
    "TrustRoot",
    "TrustStore",
    "TrustedCheckpoint",
    "TxRecord",
    "default_url",
    "error_from_outcome",
    "error_from_problem",
    "parse_genesis",
]

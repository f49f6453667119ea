"""The whole error tree of carechain.

Every expected failure is a :class:`LedgerError`; its family says who is at fault and how
the API reports it (``api/errors.py`` maps each family to an RFC 9457 problem document).
Bugs are not ``LedgerError``\\ s: they propagate as ordinary exceptions.

Each error carries a stable machine-readable ``code`` (snake_case) and a human message that
says what was wrong and, where it helps, how to fix it.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every expected carechain failure."""

    code: str = "ledger_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ValidationError(LedgerError):
    """Input is malformed, non-canonical, too large or breaks a schema rule (client's fault)."""

    code = "invalid"


class LimitExceededError(ValidationError):
    """Input exceeds a configured bound (size, depth, digits, length, count)."""

    code = "limit_exceeded"


class VerificationError(LedgerError):
    """A signature, hash, proof or checkpoint does not verify."""

    code = "verification_failed"


class SignatureError(VerificationError):
    """A signature is missing, malformed or does not verify for the claimed key."""

    code = "bad_signature"


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof does not verify."""

    code = "bad_proof"


class CheckpointError(VerificationError):
    """A checkpoint is malformed, unsigned by a trusted key, stale or inconsistent."""

    code = "bad_checkpoint"


class ChainVerificationError(VerificationError):
    """Recomputing the chain from genesis found a difference.

    ``height`` names the first bad block and ``field`` the first field that differs.
    """

    code = "chain_invalid"

    def __init__(self, message: str, *, height: int, field: str) -> None:
        super().__init__(f"block {height}: {field}: {message}")
        self.height = height
        self.field = field


class AuthorizationError(LedgerError):
    """The caller is known but not allowed to do this."""

    code = "forbidden"


class AuthenticationError(LedgerError):
    """The caller could not be authenticated (missing, expired or bad credentials)."""

    code = "unauthenticated"


class NotFoundError(LedgerError):
    """The named object does not exist."""

    code = "not_found"


class ConflictError(LedgerError):
    """The request conflicts with the ledger's state (duplicate, replay, wrong version)."""

    code = "conflict"


class DuplicateTransactionError(ConflictError):
    """This transaction id was already accepted once (replay)."""

    code = "duplicate_transaction"


class ContractError(LedgerError):
    """A well-signed transaction broke a contract rule.

    It is kept in its block with a ``rejected`` receipt carrying ``code``: the attempt is
    evidence.
    """

    code = "rejected"


class UnavailableError(LedgerError):
    """The node cannot take the request now (back-pressure); retry after ``retry_after`` s."""

    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class TooManyRequestsError(UnavailableError):
    """The caller must slow down (e.g. repeated failed sign-ins); retry after ``retry_after``."""

    code = "too_many_requests"


class InfrastructureError(LedgerError):
    """Storage, ordering or another dependency failed. Commit failures are fatal to the node."""

    code = "infrastructure"


class ConfigurationError(InfrastructureError):
    """The node is configured unsafely or inconsistently and refuses to start."""

    code = "bad_configuration"


class GoneError(NotFoundError):
    """The named object existed but was deliberately erased (e.g. a crypto-shredded record)."""

    code = "gone"

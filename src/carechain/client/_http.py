"""HTTP plumbing of the SDK: bounded requests and RFC 9457 problems mapped to ``LedgerError``.

Invariants:

* Every failure the SDK reports is a :class:`~carechain.errors.LedgerError`: a problem
  document becomes the matching class of :mod:`carechain.errors` (by its ``code``, else by
  HTTP status) carrying the problem's ``detail``; a node that cannot be reached is an
  :class:`~carechain.errors.UnavailableError`; an answer that is not what the API contract
  promises (wrong media type, malformed JSON, too large) is an
  :class:`~carechain.errors.InfrastructureError` with code ``bad_response``.
* Response bodies are read with a size bound before any parsing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from carechain import errors
from carechain.errors import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    InfrastructureError,
    LedgerError,
    LimitExceededError,
    NotFoundError,
    UnavailableError,
    ValidationError,
)

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""Largest response body the SDK reads (a whole block page of envelopes fits well below)."""

DEFAULT_TIMEOUT = 60.0
"""Seconds for connect/read; a waited submission may take a block interval or a few."""


def _error_classes() -> dict[str, type[LedgerError]]:
    """Every ``LedgerError`` class of :mod:`carechain.errors` by its default ``code``."""
    out: dict[str, type[LedgerError]] = {}
    for value in vars(errors).values():
        if (
            isinstance(value, type)
            and issubclass(value, LedgerError)
            and value is not errors.ChainVerificationError  # needs height and field
        ):
            out[value.code] = value
    return out


ERROR_BY_CODE: Mapping[str, type[LedgerError]] = _error_classes()
"""Problem ``code`` → error class, for codes that name a class of the tree."""

ERROR_BY_STATUS: Mapping[int, type[LedgerError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: AuthorizationError,
    404: NotFoundError,
    409: ConflictError,
    413: LimitExceededError,
    415: ValidationError,
    422: ValidationError,
    429: UnavailableError,
    503: UnavailableError,
}
"""HTTP status → error family, for problem codes that are specific (``revoked_key``, …)."""


def error_from_problem(status: int, body: bytes, headers: Mapping[str, str]) -> LedgerError:
    """The :class:`LedgerError` an error response stands for (RFC 9457 problem+json)."""
    problem: Any = None
    try:
        problem = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        problem = None
    if not isinstance(problem, dict):
        text = body[:200].decode("utf-8", "replace").strip()
        return InfrastructureError(
            f"HTTP {status} without a problem document{': ' + text if text else ''}",
            code="bad_response",
        )
    code = problem.get("code")
    code = code if isinstance(code, str) and code else None
    detail = problem.get("detail") or problem.get("title") or f"HTTP {status}"
    message = str(detail)
    cls = ERROR_BY_CODE.get(code or "") or ERROR_BY_STATUS.get(status)
    if cls is None:
        cls = InfrastructureError if status >= 500 else LedgerError
    if issubclass(cls, UnavailableError):
        retry = _retry_after(headers.get("retry-after"))
        return cls(message, retry_after=retry, code=code)
    return cls(message, code=code)


def _retry_after(value: str | None) -> int:
    if value and value.strip().isdigit():
        return max(1, min(int(value.strip()), 3600))
    return 1


class HttpApi:
    """A thin, bounded JSON/bytes client of one carechain node's HTTP API."""

    def __init__(
        self,
        base_url: str,
        http: httpx.Client | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._own = http is None
        self.http = http if http is not None else httpx.Client(timeout=timeout)
        self.max_bytes = max_bytes
        self.headers: dict[str, str] = {}
        """Extra headers on every request (e.g. ``Authorization`` after a token grant)."""

    def close(self) -> None:
        """Close the underlying ``httpx.Client`` if this object created it."""
        if self._own:
            self.http.close()

    def url(self, path: str) -> str:
        """Absolute URL of an API path."""
        return f"{self.base_url}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes, httpx.Headers]:
        """Send a request; return (status, body, headers) of a 2xx answer or raise."""
        url = self.url(path)
        all_headers = {**self.headers, **(headers or {})}
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            with self.http.stream(
                method,
                url,
                params=dict(params) if params else None,
                content=content,
                data=dict(data) if data else None,
                headers=all_headers,
                **kwargs,
            ) as response:
                body = self._read(response, url)
        except httpx.TimeoutException as exc:
            raise UnavailableError(
                f"{method} {url}: no answer in time ({type(exc).__name__})", code="timeout"
            ) from None
        except httpx.TransportError as exc:
            raise UnavailableError(
                f"cannot reach the carechain node at {self.base_url}: {exc or type(exc).__name__}"
                " (is `carechain node` running? set --url or $CARECHAIN_URL)",
                code="unreachable",
            ) from None
        if not 200 <= response.status_code < 300:
            raise error_from_problem(response.status_code, body, response.headers)
        return response.status_code, body, response.headers

    def _read(self, response: httpx.Response, url: str) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise InfrastructureError(
                f"{url}: answer of {declared} bytes exceeds the limit of {self.max_bytes}",
                code="bad_response",
            )
        chunks: list[bytes] = []
        total = 0
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > self.max_bytes:
                raise InfrastructureError(
                    f"{url}: answer exceeds the limit of {self.max_bytes} bytes",
                    code="bad_response",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def get_json(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        """GET ``path`` and decode a JSON answer."""
        _, body, _ = self.request("GET", path, params=params)
        return decode_json(body, f"GET {path}")

    def get_bytes(self, path: str, params: Mapping[str, str | int] | None = None) -> bytes:
        """GET ``path`` and return the body verbatim."""
        _, body, _ = self.request("GET", path, params=params)
        return body


def decode_json(body: bytes, what: str) -> Any:
    """Decode a JSON answer or raise ``InfrastructureError(bad_response)``."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InfrastructureError(
            f"{what}: the answer is not JSON ({exc})", code="bad_response"
        ) from None


__all__ = [
    "DEFAULT_TIMEOUT",
    "ERROR_BY_CODE",
    "ERROR_BY_STATUS",
    "MAX_RESPONSE_BYTES",
    "HttpApi",
    "decode_json",
    "error_from_problem",
]

"""Custodial sign-in slows password guessing: a lockout that doubles per failure."""

from __future__ import annotations

import pytest

from carechain.api.auth import LOGIN_FREE_FAILURES, AuthService
from carechain.api.errors import status_for
from carechain.crypto.keystore import Keyring
from carechain.errors import AuthenticationError, TooManyRequestsError
from carechain.node.chaindir import DEMO_PASSWORD, InitResult
from carechain.node.node import Node
from carechain.testing.chain_driver import FAST_SCRYPT_N


def _service(node: Node) -> tuple[AuthService, list[float]]:
    now = [1_000.0]
    return AuthService(node, clock=lambda: now[0]), now


def test_failures_lock_the_key_name_out_then_release(
    demo_node: Node, demo_chain: InitResult
) -> None:
    auth, now = _service(demo_node)
    ring = Keyring(demo_chain.paths.root, scrypt_n=FAST_SCRYPT_N)
    for _ in range(LOGIN_FREE_FAILURES + 1):
        with pytest.raises(AuthenticationError):
            auth.login(ring, "dr-kim", b"wrong")
    with pytest.raises(TooManyRequestsError) as exc:  # even the right password must wait
        auth.login(ring, "dr-kim", DEMO_PASSWORD)
    assert exc.value.retry_after >= 1 and status_for(exc.value)[0] == 429
    auth.login(ring, "ph-lee", DEMO_PASSWORD)  # other names are not affected
    now[0] += 3
    token, info = auth.login(ring, "dr-kim", DEMO_PASSWORD)
    assert token and info.account == "seoul-general.dr-kim"
    with pytest.raises(AuthenticationError):  # the count was reset by the success
        auth.login(ring, "dr-kim", b"wrong")
    auth.login(ring, "dr-kim", DEMO_PASSWORD)


def test_the_free_failures_do_not_lock(demo_node: Node, demo_chain: InitResult) -> None:
    """Negative control: up to LOGIN_FREE_FAILURES mistakes cost nothing."""
    auth, _ = _service(demo_node)
    ring = Keyring(demo_chain.paths.root, scrypt_n=FAST_SCRYPT_N)
    for _ in range(LOGIN_FREE_FAILURES):
        with pytest.raises(AuthenticationError):
            auth.login(ring, "dr-kim", b"wrong")
    auth.login(ring, "dr-kim", DEMO_PASSWORD)

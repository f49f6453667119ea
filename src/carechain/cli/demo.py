"""``carechain demo``: a scripted walk through what carechain proves, against a running node.

Every step uses the SDK the way an application would and says what it demonstrates. A step
whose outcome is not the expected one (a replay accepted, a revoked key allowed to sign, a
proof that does not verify) ends the demo with a non-zero exit: the demo doubles as a smoke
test of a live node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape

from carechain.cli.common import DirOption, exit_with_error, handle_errors
from carechain.cli.options import UrlOption
from carechain.cli.render import checkpoint_line
from carechain.client import Client
from carechain.client.models import Result
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.encoding import b64u_encode, canonical_bytes, decode_canonical
from carechain.errors import (
    AuthorizationError,
    DuplicateTransactionError,
    LedgerError,
    SignatureError,
    UnavailableError,
)
from carechain.ledger.tx import SignedTx, encode_envelope
from carechain.node.chaindir import ChainPaths

REGISTER = "identity.register_patient@1"
ROTATE = "identity.rotate_key@1"
REVOKE = "identity.revoke_key@1"


class DemoFailed(Exception):
    """A step did not behave as carechain promises."""


def patient_id(key: PrivateKey) -> str:
    """A patient's account id: derived from its first key (no personal data)."""
    return f"pt-{key.kid[:20]}"


def key_json(key: PrivateKey) -> dict[str, str]:
    """The public record a transaction carries for a new key."""
    return {"alg": key.alg, "pub": b64u_encode(key.public)}


def tamper(tx: SignedTx) -> bytes:
    """The envelope with one field of its signed body changed, signatures kept."""
    body = decode_canonical(tx.body_bytes)
    assert isinstance(body, dict)
    forged = canonical_bytes({**body, "created": body["created"] + 1})
    return encode_envelope(forged, tx.sigs)


class Demo:
    """The walk-through; ``run`` prints each step."""

    def __init__(self, client: Client, out: Console) -> None:
        self.client = client
        self.out = out
        self.step = 0

    def say(self, title: str) -> None:
        self.step += 1
        self.out.print(f"\n[bold cyan]{self.step}. {escape(title)}[/bold cyan]")

    def fact(self, text: str) -> None:
        self.out.print(f"   {escape(text)}")

    def proves(self, text: str) -> None:
        self.out.print(f"   [green]✓ proves:[/green] {escape(text)}")

    def submit_ok(self, tx: SignedTx) -> Result:
        (result,) = self.client.submit(tx)
        if not result.ok:
            raise DemoFailed(f"{tx.body.kind} was rejected: {result.code}: {result.message}")
        self.fact(
            f"committed in block {result.height} at log index {result.log_index} "
            f"(tx {result.tx_id.hex()})"
        )
        return result

    def expect_refused(
        self, what: str, error: type[LedgerError], attempt: Callable[[], Any]
    ) -> LedgerError:
        try:
            attempt()
        except error as exc:
            self.fact(f"refused ({exc.code}): {exc}")
            return exc
        raise DemoFailed(f"{what} was accepted; carechain must refuse it")

    def run(self) -> None:
        c = self.client
        self.say("Trust root: the genesis document")
        root = c.check_genesis()
        self.fact(f"chain {root.chain}, checkpoint origin {root.origin}")
        self.fact(f"genesis.json SHA-256 {hashlib.sha256(root.raw).hexdigest()}")
        for k in root.node_keys:
            self.fact(f"node key of {k.org}: {k.record.alg} {k.record.kid}")
        first = c.checkpoint()
        self.fact(f"signed checkpoint: {checkpoint_line(first)}")
        self.proves("the node's log head is signed by a key the genesis names")

        self.say("Register a patient with a fresh pseudonymous key (two keys: daily + backup)")
        k1, backup = generate_key(), generate_key()
        patient = patient_id(k1)
        reg = c.build(REGISTER, patient, {"keys": [key_json(k1), key_json(backup)]}, [k1, backup])
        self.fact(f"account {patient} (derived from the key; no name, no PHI on chain)")
        self.submit_ok(reg)
        self.proves("the transaction is acknowledged only once its block is durably committed")

        self.say("Show its receipt")
        rec = c.get_tx(reg.tx_id)
        events = [e.get("kind") for e in rec.receipt.get("events", []) if isinstance(e, dict)]
        status, code = rec.receipt.get("status"), rec.receipt.get("code")
        self.fact(f"receipt: {status} ({code}), events {events}")
        self.fact(
            f"envelope of {len(rec.envelope)} bytes: its signed body hashes to the transaction id"
        )
        self.proves("the node returned exactly the bytes the patient signed")

        self.say("Prove inclusion against a signed checkpoint")
        inc = c.prove_inclusion(reg.tx_id)
        self.fact(
            f"leaf {inc.leaf_index} of {inc.tree_size}: leaf hash {inc.leaf_hash.hex()} "
            f"(computed locally), audit path of {len(inc.proof)} hashes"
        )
        self.fact(f"root {inc.root.hex()} = the signed checkpoint's root")
        self.proves("the registration is in the append-only log the node signed (RFC 9162)")

        self.say("Replay the same signed transaction")
        self.expect_refused("a replay", DuplicateTransactionError, lambda: c.submit(reg))
        self.proves("a signed transaction takes effect at most once (HTTP 409)")

        self.say("Tamper with a signed envelope (change its timestamp, keep the signature)")
        fresh = c.build(REVOKE, patient, {"kid": backup.kid, "reason": "demo"}, k1)
        self.expect_refused("a tampered envelope", SignatureError, lambda: c.submit(tamper(fresh)))
        self.proves("any change to signed bytes breaks the signature: the node refuses it")

        self.say("Rotate the patient's daily key")
        k2 = generate_key()
        self.submit_ok(c.build(ROTATE, patient, {"keys": [key_json(k2)], "old": k1.kid}, [k1, k2]))
        self.fact(f"old key {k1.kid} is now 'rotated', new key {k2.kid} is active")
        stale = c.build(REVOKE, patient, {"kid": backup.kid, "reason": "demo"}, k1)
        self.expect_refused("a rotated key", AuthorizationError, lambda: c.submit(stale))
        self.proves("a rotated-out key can no longer act for the patient")

        self.say("Revoke the backup key, then try to sign with it")
        self.submit_ok(c.build(REVOKE, patient, {"kid": backup.kid, "reason": "lost"}, k2))
        later = c.build(REVOKE, patient, {"kid": k2.kid, "reason": "hijack attempt"}, backup)
        self.expect_refused("a revoked key", AuthorizationError, lambda: c.submit(later))
        self.proves("revocation takes effect from its block on (HTTP 403)")

        self.say("A patient tries to register a practitioner (not its role)")
        member: dict[str, Any] = {
            "account": "seoul-general.dr-mallory", "keys": [key_json(generate_key())],
            "org": "seoul-general", "role": "practitioner",
        }  # fmt: skip
        attempt = c.build("identity.register_member@1", patient, member, k2)
        (result,) = c.submit(attempt)
        if result.status != "rejected":
            raise DemoFailed(f"a patient registered a practitioner: {result.status}")
        self.fact(f"receipt: rejected ({result.code}): {result.message}")
        kept = c.prove_inclusion(attempt.tx_id)
        self.fact(f"yet the attempt is leaf {kept.leaf_index} of the signed log")
        self.proves("contracts enforce roles, and a refused attempt is kept as evidence")

        self.say("Prove consistency between the first and the newest checkpoint")
        head = c.checkpoint()
        cons = c.prove_consistency(first.size, head.size)
        self.fact(f"then: {checkpoint_line(first)}")
        self.fact(f"now:  {checkpoint_line(head)}")
        self.fact(f"consistency proof of {len(cons.proof)} hashes verified")
        self.proves("the log only grew: nothing committed before was rewritten or dropped")
        self.out.print("\n[bold green]demo complete[/bold green]: every promise held.")


def demo(url: UrlOption, data_dir: DirOption) -> None:
    """Walk through registering, proving, replaying, tampering, rotating and revoking."""
    out = Console(highlight=False, soft_wrap=True)
    paths = ChainPaths(data_dir)
    genesis = paths.genesis.read_bytes() if paths.exists() else None
    out.print(f"[bold]carechain demo[/bold] against {escape(url)}")
    out.print(
        f"trust root: {escape(str(paths.genesis))}"
        if genesis is not None
        else "trust root: fetched from the node on first use (pass --dir to pin a local genesis)"
    )
    with handle_errors():
        try:
            with Client(url, genesis=genesis) as client:
                Demo(client, out).run()
        except UnavailableError as exc:
            exit_with_error(str(exc), "start a node with `carechain node` or pass --url", 1)
        except DemoFailed as exc:
            exit_with_error(f"demo step failed: {exc}", code=1)


__all__ = ["Demo", "DemoFailed", "demo", "tamper"]

"""``carechain demo``: a scripted walk through what carechain proves, against a running node.

Every step uses the SDK the way an application would and says what it demonstrates. A step
whose outcome is not the expected one (a replay accepted, a revoked key allowed to sign, a
proof that does not verify) ends the demo with a non-zero exit: the demo doubles as a smoke
test of a live node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from carechain.cli.common import DirOption, exit_with_error, handle_errors
from carechain.cli.options import UrlOption, own_node_keys
from carechain.cli.records import entry_line
from carechain.cli.render import checkpoint_line, fmt_time
from carechain.cli.rx import run_rx_demo
from carechain.client import Client, RecordsClient
from carechain.client.models import Result
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.encoding import b64u_encode, canonical_bytes, decode_canonical
from carechain.errors import (
    AuthenticationError,
    AuthorizationError,
    DuplicateTransactionError,
    GoneError,
    LedgerError,
    NotFoundError,
    SignatureError,
    UnavailableError,
)
from carechain.fhir.consent_map import consent_resource
from carechain.ledger.tx import SignedTx, encode_envelope
from carechain.node.chaindir import DEMO_PASSWORD, ChainPaths

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


# -- the records walk-through (carechain demo --records) ------------------------------------------

ACCOUNT_SYSTEM = "urn:carechain:account"
EMERGENCY_ORG = "seoul-general"
EMERGENCY_KEY = "er-yoon"
"""Key name (and account suffix) of the demo's emergency practitioner."""


def ensure_emergency_member(
    client: Client,
    data_dir: Path,
    password: bytes = DEMO_PASSWORD,
    *,
    name: str = EMERGENCY_KEY,
) -> str:
    """Make sure an emergency practitioner of Seoul General can sign in; its key name.

    Its key is created in the node's keyring (``data_dir``) if missing, and the account is
    registered with the ``emergency`` capability by ``identity.register_member@1`` signed with
    the seoul-general admin key of the demo keyring, unless it already exists.
    """
    account = f"{EMERGENCY_ORG}.{name}"
    ring = Keyring(data_dir)
    try:
        ring.get_info(name)
    except NotFoundError:
        ring.create(name, "ed25519", password, account=account)
    try:
        client.account(account)
        return name
    except NotFoundError:
        pass
    admin = ring.load(f"{EMERGENCY_ORG}-admin", password)
    pub = ring.export_public(name)
    args: dict[str, Any] = {
        "account": account, "capabilities": ["emergency"],
        "display": "Dr. Yoon Hajin (emergency department)",
        "keys": [{"alg": pub["alg"], "pub": pub["pub"]}], "licence": "KR-MD-60311",
        "org": EMERGENCY_ORG, "role": "practitioner",
    }  # fmt: skip
    tx = client.build("identity.register_member@1", f"{EMERGENCY_ORG}.admin", args, admin)
    (result,) = client.submit(tx)
    if not result.ok:
        raise DemoFailed(f"registering {account} was rejected: {result.code}: {result.message}")
    return name


def consent_json(subject: str, grantee: str, code: str, purpose: str = "TREAT") -> dict[str, Any]:
    """An R5 Consent permitting ``grantee`` the consentaction ``code`` for ``purpose``."""
    return consent_resource(subject, grantee, [code], [purpose])


class RecordsDemo(Demo):
    """A patient's records, consents, a break-glass, the verified access log and an erasure."""

    def __init__(self, client: Client, out: Console, data_dir: Path) -> None:
        super().__init__(client, out)
        self.data_dir = data_dir

    def sign_in(self, key: str) -> RecordsClient:
        rc = RecordsClient(self.client).login(key, DEMO_PASSWORD)
        self.fact(f"{key} signed in as {rc.account} (custodial session)")
        return rc

    def denied(self, what: str, attempt: Callable[[], Any]) -> LedgerError:
        try:
            attempt()
        except (AuthorizationError, GoneError) as exc:
            status = getattr(exc, "status", "?")
            self.fact(
                f"denied (HTTP {status}, {exc.code}); audit entry {getattr(exc, 'audit_id', '')}"
            )
            return exc
        raise DemoFailed(f"{what} was permitted; carechain must refuse it")

    def run(self) -> None:
        self.say("Sign in: the patient, a doctor at Seoul General and a pharmacist at Hanbit")
        me = self.sign_in("patient-1")
        kim = self.sign_in("dr-kim")
        lee = self.sign_in("ph-lee")
        assert me.account is not None
        self.proves("people sign with keys their node keeps encrypted; every signature is theirs")

        self.say("The patient lets Seoul General write its records (consent: correct, TREAT)")
        grant = me.grant_consent(
            consent_json(f"Patient/{me.account}", "Organization/seoul-general", "correct")
        )
        self.fact(f"consent {grant.id} signed by {me.account}; audit entry {grant.audit_id}")
        self.proves("a hospital writes a patient's record only with the patient's signed consent")

        self.say("dr-kim records the patient and a heart-rate Observation at Seoul General")
        pat = kim.create({
            "resourceType": "Patient",
            "identifier": [{"system": ACCOUNT_SYSTEM, "value": me.account}],
            "name": [{"family": "Hong", "given": ["Gildong"]}], "gender": "male",
            "birthDate": "1975-03-02",
        })  # fmt: skip
        pid = str(pat.id)
        obs = kim.create({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                                 "display": "Heart rate"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": "2026-11-01T09:30:00Z",
            "valueQuantity": {"value": 72, "unit": "beats/minute"},
        })  # fmt: skip
        oid = str(obs.id)
        self.fact(f"Patient/{pid} version {pat.version}; audit entry {pat.audit_id}")
        self.fact(f"Observation/{oid} version {obs.version}; audit entry {obs.audit_id}")
        self.proves(
            "records are stored encrypted off chain, anchored on chain, every write audited"
        )

        self.say("ph-lee (Hanbit Pharmacy) tries to read the Observation without consent")
        self.denied("a read without consent", lambda: lee.read("Observation", oid))
        self.proves("no consent, no data: the refusal is itself an audit entry (HTTP 403)")

        self.say("The patient grants ph-lee read access for treatment (TREAT)")
        lee_grant = me.grant_consent(
            consent_json(f"Patient/{pid}", "Practitioner/hanbit-pharmacy.ph-lee", "access")
        )
        cid = str(lee_grant.id)
        self.fact(f"consent {cid}; audit entry {lee_grant.audit_id}")
        seen = lee.read("Observation", oid)
        value = seen.resource.get("valueQuantity", {})
        self.fact(
            f"permitted: heart rate {value.get('value')} {value.get('unit')}; "
            f"audit entry {seen.audit_id}"
        )
        self.proves("the patient's consent, and nothing else, opened the record to the pharmacy")

        self.say("The patient revokes the consent; ph-lee tries again")
        rev = me.revoke_consent(cid)
        self.fact(f"revoked by transaction {rev.transaction}")
        self.denied("a read after revocation", lambda: lee.read("Observation", oid))
        self.proves("revocation takes effect from its block; the earlier read stays on record")

        self.say("An emergency: a practitioner with the emergency capability breaks the glass")
        name = self.emergency_key()
        er = self.sign_in(name)
        opened = er.break_glass(pid, "unconscious in the emergency department")
        session = er.parameters(opened)
        self.fact(
            f"break-glass session {session.get('id')} (purpose ETREAT) until "
            f"{fmt_time(int(session.get('expires') or 0))}; audit entry {opened.audit_id}"
        )
        urgent = er.read("Observation", oid, purpose="ETREAT")
        self.fact(f"permitted under break-glass; audit entry {urgent.audit_id} (flagged)")
        self.proves("emergencies are never blocked, yet every such access is flagged for review")

        self.say("The patient's access log: every entry's proof verified offline")
        report = me.verify_audit(me.account)
        first = grant.audit_id  # this walk-through's first entry; earlier runs are verified too
        start = next((i for i, e in enumerate(report.entries) if e.tx_id == first), 0)
        if start:
            self.fact(f"{start} earlier entries (previous runs) verified, not shown")
        for check in report.entries[start:]:
            self.fact(("✓ " if check.ok else "✗ ") + entry_line(check))
        flagged = [e for e in report.entries if e.entry.get("break_glass")]
        self.fact(f"{len(flagged)} break-glass access(es) flagged for review")
        self.fact(
            f"verified {report.verified} of {report.total} entries against checkpoint size "
            f"{report.checkpoint.size}"
        )
        self.proves("who looked at the record, when, why and on what basis: provable, append-only")

        self.say("The patient erases the Observation")
        erased = me.erase("Observation", oid, "the patient asked", "patient_request")
        self.fact(f"erasure receipt {erased.transaction}; audit entry {erased.audit_id}")
        gone = self.denied("a read after erasure", lambda: kim.read("Observation", oid))
        if getattr(gone, "status", None) != 410:
            raise DemoFailed(f"a read after erasure answered {getattr(gone, 'status', '?')}")
        self.proves("erased means gone: the data key is destroyed, reads answer 410 Gone")
        for rc in (me, kim, lee, er):
            rc.logout()
        self.out.print("\n[bold green]records demo complete[/bold green]: every promise held.")

    def emergency_key(self) -> str:
        try:
            RecordsClient(self.client).login(EMERGENCY_KEY, DEMO_PASSWORD).logout()
            self.fact(f"{EMERGENCY_KEY} is already registered with the emergency capability")
            return EMERGENCY_KEY
        except AuthenticationError:
            pass
        if not ChainPaths(self.data_dir).exists():
            raise DemoFailed(
                "no emergency practitioner yet: pass --dir with the node's data directory so "
                "the demo can register one with the seoul-general admin key"
            )
        name = ensure_emergency_member(self.client, self.data_dir)
        self.fact(
            f"registered {EMERGENCY_ORG}.{name} (capability emergency) by "
            f"identity.register_member@1 signed by {EMERGENCY_ORG}.admin"
        )
        return name


def demo(
    url: UrlOption,
    data_dir: DirOption,
    records: Annotated[
        bool,
        typer.Option(
            "--records",
            help="Walk a patient through records, consent, break-glass, the verified access "
            "log and erasure instead (custodial sign-in with the demo accounts).",
        ),
    ] = False,
    rx: Annotated[
        bool, typer.Option("--rx", help="Walk an opioid e-prescription and the PDMP instead.")
    ] = False,
    claims: Annotated[
        bool, typer.Option("--claims", help="Bill a visit: approved, duplicate, no encounter.")
    ] = False,
    trials: Annotated[
        bool, typer.Option("--trials", help="A trial's switched outcome; a month of steps.")
    ] = False,
    supply: Annotated[
        bool,
        typer.Option("--supply", help="Walk a serialised lot from manufacturer to pharmacy "
                     "instead (EPCIS capture, DSCSA custody, verification, a diverted case)."),
    ] = False,
) -> None:
    """Walk through registering, proving, replaying, tampering, rotating and revoking."""
    out = Console(highlight=False, soft_wrap=True)
    paths = ChainPaths(data_dir)
    chosen = [n for n, on in (("--records", records), ("--rx", rx), ("--claims", claims),
                              ("--trials", trials), ("--supply", supply)) if on]  # fmt: skip
    if chosen and not paths.exists():
        exit_with_error(
            f"{' '.join(chosen)} signs with the demo accounts' keys, and {data_dir} holds no "
            "chain",
            f"pass --dir with the data directory the node at {url} runs on (or set "
            "CARECHAIN_DIR)",
            code=4,
        )
    genesis = paths.genesis.read_bytes() if paths.exists() else None
    out.print(f"[bold]carechain demo[/bold] against {escape(url)}")
    out.print(
        f"trust root: {escape(str(paths.genesis))}"
        if genesis is not None
        else "trust root: fetched from the node on first use (pass --dir to pin a local genesis)"
    )
    with handle_errors():
        try:
            with Client(url, genesis=genesis, node_keys=own_node_keys(data_dir)) as client:
                if supply:
                    from carechain.cli.supply import SupplyDemo

                    SupplyDemo(client, out, data_dir).run()
                elif records:
                    client.check_genesis()
                    RecordsDemo(client, out, data_dir).run()
                elif rx:
                    run_rx_demo(client, out, data_dir)
                elif claims:
                    from carechain.cli.claims import run_claims_demo  # imports this module

                    run_claims_demo(client, out, data_dir)
                elif trials:
                    from carechain.cli.trials import run_trials_demo  # imports this module

                    run_trials_demo(client, out, data_dir)
                else:
                    Demo(client, out).run()
        except UnavailableError as exc:
            exit_with_error(str(exc), "start a node with `carechain node` or pass --url", 1)
        except DemoFailed as exc:
            exit_with_error(f"demo step failed: {exc}", code=1)


__all__ = [
    "Demo",
    "DemoFailed",
    "RecordsDemo",
    "consent_json",
    "demo",
    "ensure_emergency_member",
    "tamper",
]


"""``carechain records|consent|audit|erase|break-glass``: health records through ``/fhir``.

Every command signs in custodially first (``--key NAME``: a key of the node's keyring; the
password from ``--password-file``, else ``$CARECHAIN_PASSWORD``, else a prompt) and then uses
the SDK's :class:`~carechain.client.RecordsClient`. Refusals end with the node's reason and the
audit entry that recorded them, and the usual exit codes (:func:`carechain.cli.common.
exit_code_for`): 2 invalid input, 3 not signed in / not allowed (403: no consent, revoked, …),
4 not found or erased (410), 5 conflict (stale ``--if-match``), 6 not verified, 1 other.

``carechain audit verify --patient ID`` prints every access-log entry (who, what, when, why,
outcome, basis) and checks every inclusion proof offline against a checkpoint signed by a
genesis node key: ``verified N of N entries against checkpoint size S``, exit 6 otherwise.
"""

from __future__ import annotations

import json
import mimetypes
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from carechain.cli.common import exit_code_for, exit_with_error
from carechain.cli.options import (
    GenesisOption,
    JsonFlag,
    TrustFileOption,
    UrlOption,
    echo_json,
    make_client,
)
from carechain.cli.render import console, fmt_time
from carechain.client import AuditReport, EntryCheck, FhirResult, RecordsClient
from carechain.crypto.keystore import PASSWORD_ENV, resolve_password
from carechain.errors import LedgerError, ValidationError
from carechain.fhir.consent_map import consent_resource as fhir_consent

records_app = typer.Typer(
    help="Create, read, update, search FHIR records (custodial sign-in).", no_args_is_help=True
)
consent_app = typer.Typer(help="Grant, list and revoke a patient's consents.", no_args_is_help=True)
audit_app = typer.Typer(
    help="A patient's access log, and its proofs verified offline.", no_args_is_help=True
)

CONSENT_ACTIONS = {"read": "access", "write": "correct"}
"""CLI action → HL7 consentaction code the FHIR facade maps to consent.grant@1 actions."""

KeyOption = Annotated[
    str,
    typer.Option("--key", metavar="NAME", help="Sign in with this key of the node's keyring."),
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        dir_okay=False,
        help=f"Password of the key (else ${PASSWORD_ENV}, else a prompt).",
    ),
]
PurposeOption = Annotated[
    str | None,
    typer.Option("--purpose", help="PurposeOfUse (TREAT by default; ETREAT under break-glass)."),
]
PatientOption = Annotated[
    str, typer.Option("--patient", help="Patient: account id, Patient/<id> or the Patient's id.")
]


# -- plumbing --------------------------------------------------------------------------------


@contextmanager
def fhir_errors() -> Iterator[None]:
    """Like :func:`handle_errors`, naming the HTTP status and the audit entry of a refusal."""
    try:
        yield
    except LedgerError as exc:
        status = getattr(exc, "status", None)
        audit_id = getattr(exc, "audit_id", None)
        hints = []
        if status is not None:
            hints.append(f"HTTP {status} ({exc.code})")
        if audit_id:
            hints.append(f"recorded as audit entry {audit_id}")
        exit_with_error(str(exc), "; ".join(hints) or None, exit_code_for(exc))


@contextmanager
def signed_in(
    url: str,
    key: str,
    password_file: Path | None,
    *,
    genesis: Path | None = None,
    trust_file: Path | None = None,
) -> Iterator[RecordsClient]:
    """A :class:`RecordsClient` signed in as ``key``; errors end the command precisely."""
    with fhir_errors():
        password = resolve_password(password_file, prompt=_prompt(key))
        client = make_client(url, genesis=genesis, trust_file=trust_file)
        try:
            yield RecordsClient(client).login(key, password)
        finally:
            client.close()


def _prompt(key: str) -> Callable[[], str]:
    def ask() -> str:
        text: str = typer.prompt(f"Password of key {key}", hide_input=True)
        return text

    return ask


def read_resource(path: Path) -> dict[str, Any]:
    """A JSON resource from a file (``-``: stdin)."""
    try:
        raw = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"cannot read {path}: {exc}") from None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValidationError(f"{path}: want a JSON object (a FHIR resource)")
    return value


def result_json(res: FhirResult) -> dict[str, Any]:
    """A result as JSON."""
    out = {
        "audit_entry": res.audit_id,
        "etag": res.etag,
        "location": res.location,
        "resource": dict(res.resource),
        "status": res.status,
        "transaction": res.transaction,
    }
    return {k: v for k, v in out.items() if v is not None}


def print_result(verb: str, res: FhirResult, as_json: bool, *, body: bool = True) -> None:
    """One summary line (what, version, audit entry), then the resource unless ``body``."""
    if as_json:
        echo_json(result_json(res))
        return
    out = console()
    rtype = res.resource.get("resourceType", "?")
    what = f"{rtype}/{res.id}" if res.id else str(rtype)
    version = f" version {res.version}" if res.version is not None and res.id else ""
    out.print(f"[green]{escape(verb)}[/green] {escape(what)}{version} (HTTP {res.status})")
    if res.audit_id:
        out.print(f"  audit entry  {res.audit_id}")
    if res.transaction:
        out.print(f"  transaction  {res.transaction}")
    if res.location:
        out.print(f"  location     {escape(res.location)}")
    if body:
        typer.echo(json.dumps(res.resource, indent=2, ensure_ascii=False))


# -- records ---------------------------------------------------------------------------------


@records_app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="FHIR resource JSON ('-': stdin).")],
    key: KeyOption,
    url: UrlOption,
    password_file: PasswordFileOption = None,
    purpose: PurposeOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a record (validated, stored encrypted, anchored on chain, audited)."""
    with fhir_errors():
        resource = read_resource(file)
    with signed_in(url, key, password_file) as rc:
        res = rc.create(resource, purpose=purpose)
    print_result("created", res, as_json)


@records_app.command("read")
def read(
    rtype: Annotated[str, typer.Argument(metavar="TYPE", help="Resource type, e.g. Observation.")],
    rid: Annotated[str, typer.Argument(metavar="ID")],
    key: KeyOption,
    url: UrlOption,
    version: Annotated[int | None, typer.Option("--version", min=1, help="vread.")] = None,
    password_file: PasswordFileOption = None,
    purpose: PurposeOption = None,
    check_against: Annotated[
        str | None,
        typer.Option(
            "--check-against",
            metavar="URL",
            help="Your own node: check the content against the anchor in its ledger, proven "
            "in a checkpoint your trust store accepts (a record hosted by another organisation).",
        ),
    ] = None,
    genesis: GenesisOption = None,
    trust_file: TrustFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Read the latest (or one) version of a record; a refusal names its reason."""
    if check_against is not None:
        _read_checked(rtype, rid, key, url, version, password_file, purpose, check_against,
                      genesis, trust_file, as_json)  # fmt: skip
        return
    with signed_in(url, key, password_file) as rc:
        if version is None:
            res = rc.read(rtype, rid, purpose=purpose)
        else:
            res = rc.vread(rtype, rid, version, purpose=purpose)
    print_result("read", res, as_json)


def _read_checked(
    rtype: str,
    rid: str,
    key: str,
    url: str,
    version: int | None,
    password_file: Path | None,
    purpose: str | None,
    check_against: str,
    genesis: Path | None,
    trust_file: Path | None,
    as_json: bool,
) -> None:
    with signed_in(url, key, password_file) as rc, fhir_errors():
        ledger = make_client(check_against, genesis=genesis, trust_file=trust_file)
        try:
            got = rc.read_verified(rtype, rid, ledger=ledger, version=version, purpose=purpose)
        finally:
            ledger.close()
    anchor = got.anchor
    if as_json:
        echo_json({
            "resource": dict(got.resource), "org": got.org, "version": got.version,
            "audit_id": got.audit_id, "digest": got.digest,
            "anchor_tx": anchor.tx.tx_id.hex(), "checkpoint_size": anchor.tree_size,
        })  # fmt: skip
        return
    out = console()
    out.print(
        f"[green]read and checked[/green] {escape(rtype)}/{escape(rid)} version {got.version} "
        f"hosted by {escape(got.org)}"
    )
    out.print(f"  audit entry  {got.audit_id}")
    out.print(
        f"  anchor       {anchor.tx.tx_id.hex()} (block {anchor.tx.height}), proven in "
        f"checkpoint size {anchor.tree_size} of {escape(check_against)}"
    )
    out.print("  content      matches the keyed digest anchored on your ledger")
    typer.echo(json.dumps(got.resource, indent=2, ensure_ascii=False))


@records_app.command("update")
def update(
    rtype: Annotated[str, typer.Argument(metavar="TYPE")],
    rid: Annotated[str, typer.Argument(metavar="ID")],
    file: Annotated[Path, typer.Argument(help="The new version's JSON ('-': stdin).")],
    key: KeyOption,
    url: UrlOption,
    if_match: Annotated[
        int | None, typer.Option("--if-match", min=1, help="Only if this is the latest version.")
    ] = None,
    password_file: PasswordFileOption = None,
    purpose: PurposeOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Store and anchor the next version (exit 5 when --if-match is stale)."""
    with fhir_errors():
        resource = read_resource(file)
    with signed_in(url, key, password_file) as rc:
        res = rc.update(rtype, rid, resource, if_match, purpose=purpose)
    print_result("updated", res, as_json)


@records_app.command("attach")
def attach(
    path: Annotated[
        Path, typer.Argument(metavar="FILE", exists=True, dir_okay=False, readable=True)
    ],
    patient: PatientOption,
    key: KeyOption,
    url: UrlOption,
    content_type: Annotated[
        str | None,
        typer.Option("--content-type", help="Media type (guessed from the file name if absent)."),
    ] = None,
    password_file: PasswordFileOption = None,
    purpose: PurposeOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Upload an attachment (PDF, image, DICOM…) as a Binary, streamed, encrypted, anchored."""
    media = content_type or mimetypes.guess_type(path.name)[0]
    if not media:
        exit_with_error(f"cannot tell the media type of {path.name}",
                        "pass --content-type, e.g. application/pdf", 2)  # fmt: skip
    with signed_in(url, key, password_file) as rc, _bar(path.stat().st_size, "uploading") as tick:
        res = rc.attach(path, content_type=str(media), patient=patient, purpose=purpose,
                        progress=tick)  # fmt: skip
    print_result("attached", res, as_json)


@records_app.command("fetch-attachment")
def fetch_attachment(
    rid: Annotated[str, typer.Argument(metavar="ID", help="The Binary's id.")],
    output: Annotated[Path, typer.Option("--output", "-o", dir_okay=False, help="Write here.")],
    key: KeyOption,
    url: UrlOption,
    version: Annotated[int | None, typer.Option("--version", min=1)] = None,
    password_file: PasswordFileOption = None,
    purpose: PurposeOption = None,
) -> None:
    """Download a Binary's content (checked against its anchor by the node), streamed."""
    part = output.with_name(output.name + ".part")
    try:
        with signed_in(url, key, password_file) as rc, part.open("wb") as sink:
            got = rc.fetch_attachment(rid, sink, version=version, purpose=purpose)
        part.replace(output)
    finally:
        part.unlink(missing_ok=True)
    out = console()
    out.print(f"[green]fetched[/green] Binary/{escape(rid)} version {got.version}: {got.size} "
              f"bytes of {escape(got.content_type)} → {escape(str(output))}")  # fmt: skip
    out.print(f"  audit entry  {got.audit_id}")


@contextmanager
def _bar(total: int, what: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over ``total`` bytes; yields the per-chunk callback."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=console(), transient=True) as bar:  # fmt: skip
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


@records_app.command("history")
def history(
    rtype: Annotated[str, typer.Argument(metavar="TYPE")],
    rid: Annotated[str, typer.Argument(metavar="ID")],
    key: KeyOption,
    url: UrlOption,
    password_file: PasswordFileOption = None,
    purpose: PurposeOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Every version of a record, newest first."""
    with signed_in(url, key, password_file) as rc:
        res = rc.history(rtype, rid, purpose=purpose)
    if as_json:
        echo_json(result_json(res))
        return
    out = console()
    out.print(f"[bold]history[/bold] of {escape(rtype)}/{escape(rid)} (audit entry {res.audit_id})")
    for r in rc.resources(res):
        meta = r.get("meta") or {}
        out.print(f"  version {meta.get('versionId')}  {meta.get('lastUpdated', '')}")


@records_app.command("search")
def search(
    rtype: Annotated[str, typer.Argument(metavar="TYPE")],
    key: KeyOption,
    url: UrlOption,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="NAME=VALUE", help="Search parameter (repeat)."),
    ] = None,
    password_file: PasswordFileOption = None,
    purpose: PurposeOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Search records (patient, subject, _id, code, _lastUpdated, _count)."""
    params: dict[str, str] = {}
    with fhir_errors():
        for item in param or ():
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise ValidationError(f"--param {item!r}: want NAME=VALUE")
            params[name] = value
    with signed_in(url, key, password_file) as rc:
        res = rc.search(rtype, purpose=purpose, **params)
    if as_json:
        echo_json(result_json(res))
        return
    found = rc.resources(res)
    out = console()
    total = res.resource.get("total", len(found))
    out.print(f"[bold]{total}[/bold] {escape(rtype)} found (audit entry {res.audit_id})")
    for r in found:
        meta = r.get("meta") or {}
        out.print(f"  {escape(rtype)}/{escape(str(r.get('id')))}  version {meta.get('versionId')}")


# -- consent ----------------------------------------------------------------------------------


def consent_resource(
    patient: str, grantee: str, actions: list[str], purposes: list[str], deny: bool
) -> dict[str, Any]:
    """An R5 Consent from the command's options."""
    unknown = [a for a in actions if a not in CONSENT_ACTIONS]
    if unknown:
        raise ValidationError(f"--action {unknown[0]!r}: want read or write")
    subject = patient if "/" in patient else f"Patient/{patient}"
    codes = [CONSENT_ACTIONS[a] for a in actions]
    return fhir_consent(subject, grantee, codes, purposes, decision="deny" if deny else "permit")


@consent_app.command("grant")
def grant(
    key: KeyOption,
    url: UrlOption,
    file: Annotated[
        Path | None, typer.Option("--file", dir_okay=False, help="An R5 Consent JSON ('-': stdin).")
    ] = None,
    patient: Annotated[
        str | None, typer.Option("--patient", help="The patient (subject) granting.")
    ] = None,
    grantee: Annotated[
        str | None,
        typer.Option(
            "--grantee",
            help="Practitioner/<account>, Organization/<org> (who may act).",
        ),
    ] = None,
    action: Annotated[
        list[str] | None, typer.Option("--action", help="read or write (repeat).")
    ] = None,
    purpose: Annotated[
        list[str] | None, typer.Option("--purpose", help="PurposeOfUse (repeat; TREAT default).")
    ] = None,
    deny: Annotated[bool, typer.Option("--deny", help="A deny provision.")] = False,
    password_file: PasswordFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The signed-in patient grants consent (--file, or --patient and --grantee)."""
    with fhir_errors():
        if file is not None:
            resource = read_resource(file)
        elif patient and grantee:
            resource = consent_resource(
                patient, grantee, action or ["read"], purpose or ["TREAT"], deny
            )
        else:
            raise ValidationError("give --file CONSENT.json, or --patient and --grantee")
    with signed_in(url, key, password_file) as rc:
        res = rc.grant_consent(resource)
    print_result("granted", res, as_json, body=False)
    if not as_json:
        console().print(
            f"  consent id   {res.id} (revoke with `carechain consent revoke {res.id}`)"
        )


@consent_app.command("revoke")
def revoke(
    consent_id: Annotated[str, typer.Argument(metavar="CONSENT_ID")],
    key: KeyOption,
    url: UrlOption,
    password_file: PasswordFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a consent (effective from its block; earlier accesses stay valid and visible)."""
    with signed_in(url, key, password_file) as rc:
        res = rc.revoke_consent(consent_id)
    if as_json:
        echo_json(result_json(res))
        return
    out = console()
    out.print(f"[green]revoked[/green] consent {escape(consent_id)}")
    out.print(f"  transaction  {res.transaction}")
    out.print(f"  audit entry  {res.audit_id}")


@consent_app.command("list")
def list_consents(
    patient: PatientOption,
    key: KeyOption,
    url: UrlOption,
    password_file: PasswordFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A patient's consents (the patient, or a grantee sees those naming it)."""
    with signed_in(url, key, password_file) as rc:
        consents = rc.consents(patient)
    if as_json:
        echo_json([dict(c) for c in consents])
        return
    out = console()
    out.print(f"[bold]{len(consents)}[/bold] consent(s) of {escape(patient)}")
    for c in consents:
        actors, actions, purposes = [], [], []
        for prov in c.get("provision") or ():
            for a in prov.get("actor") or ():
                actors.append(str((a.get("reference") or {}).get("reference", "?")))
            for a in prov.get("action") or ():
                actions += [str(x.get("code")) for x in a.get("coding") or ()]
            purposes += [str(p.get("code")) for p in prov.get("purpose") or ()]
        out.print(
            f"  {escape(str(c.get('id')))}  {escape(str(c.get('status')))} "
            f"{escape(str(c.get('decision')))}  to {escape(','.join(actors))}  "
            f"actions {escape(','.join(actions))}  for {escape(','.join(purposes))}"
        )


# -- erase, break-glass ----------------------------------------------------------------------


def erase(
    rtype: Annotated[str, typer.Argument(metavar="TYPE")],
    rid: Annotated[str, typer.Argument(metavar="ID")],
    key: KeyOption,
    url: UrlOption,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded on chain).")] = "",
    basis: Annotated[
        str | None,
        typer.Option(
            "--basis",
            help="patient_request (the patient's default), court_order, data_error, "
            "legal_obligation, retention_expired.",
        ),
    ] = None,
    password_file: PasswordFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Erase a record: crypto-shredding, a signed erasure receipt, 410 Gone afterwards."""
    with signed_in(url, key, password_file) as rc:
        res = rc.erase(rtype, rid, reason, basis)
    if as_json:
        echo_json(result_json(res))
        return
    out = console()
    out.print(f"[green]erased[/green] {escape(rtype)}/{escape(rid)}: later reads answer 410 Gone")
    out.print(f"  erasure receipt  {res.transaction}")
    out.print(f"  audit entry      {res.audit_id}")


def break_glass(
    patient: PatientOption,
    reason: Annotated[str, typer.Option("--reason", help="The emergency (recorded, reviewed).")],
    key: KeyOption,
    url: UrlOption,
    password_file: PasswordFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Open a time-boxed ETREAT break-glass session (needs the emergency capability)."""
    with signed_in(url, key, password_file) as rc:
        res = rc.break_glass(patient, reason)
    if as_json:
        echo_json(result_json(res))
        return
    out = console()
    out.print(f"[yellow]break-glass session opened[/yellow] for {escape(patient)}")
    for name, value in sorted(rc.parameters(res).items()):
        shown = (
            fmt_time(value)
            if name in ("start", "end", "until") and isinstance(value, int)
            else value
        )
        out.print(f"  {escape(name):<12} {escape(str(shown))}")
    out.print(f"  audit entry  {res.audit_id} (flagged for review)")
    out.print("  read with --purpose ETREAT while it lasts")


# -- audit ------------------------------------------------------------------------------------


def entry_line(check: EntryCheck) -> str:
    """when, who (account, role, and the organisation whose node served it), what, why,
    outcome (with its reason) and basis of one entry."""
    e = check.entry
    when = fmt_time(e["time"]) if isinstance(e.get("time"), int) else "?"
    who = f"{check.field('actor')} ({check.field('role')}) at {check.field('org')}"
    what = f"{check.field('action')} {check.field('resources') or '-'}"
    raw = e.get("basis")
    basis = (
        f"{raw.get('kind', '?')} {raw.get('id', '')}".strip()
        if isinstance(raw, Mapping)
        else check.field("basis")
    )
    flag = " BREAK-GLASS" if e.get("break_glass") or "break_glass" in basis else ""
    return (
        f"{when}  who {who}  what {what}  why {check.field('purpose')}  "
        f"outcome {check.field('outcome')} ({check.field('reason')})  "
        f"basis {basis or '-'}{flag}"
    )


def print_report(report: AuditReport) -> None:
    """Every entry with its verification, then the summary line."""
    out = console()
    out.print(f"[bold]access log[/bold] of {escape(report.patient)}: {report.total} entries")
    for c in report.entries:
        mark = "[green]✓[/green]" if c.ok else "[red]✗[/red]"
        out.print(f" {mark} leaf {c.leaf_index:>6}  {escape(entry_line(c))}")
        out.print(f"     entry {c.tx_id}")
        if not c.ok:
            out.print(f"     [red]not verified: {escape(str(c.error))}[/red]")
    cp = report.checkpoint
    out.print(
        f"proofs for tree size {report.tree_size}, root {report.root.hex()}, proven against the "
        f"checkpoint {cp.checkpoint.origin} size {cp.size} signed by a genesis node key"
    )
    colour = "green" if report.ok else "red"
    out.print(
        f"[{colour}]verified {report.verified} of {report.total} entries against checkpoint "
        f"size {cp.size}[/{colour}]"
    )


@audit_app.command("verify")
def audit_verify(
    patient: PatientOption,
    key: KeyOption,
    url: UrlOption,
    password_file: PasswordFileOption = None,
    genesis: GenesisOption = None,
    trust_file: TrustFileOption = None,
) -> None:
    """Print every access-log entry and verify every inclusion proof offline (exit 6 if any
    does not verify)."""
    with signed_in(url, key, password_file, genesis=genesis, trust_file=trust_file) as rc:
        report = rc.verify_audit(patient, strict=False)
    print_report(report)
    if not report.ok:
        exit_with_error(
            f"{report.total - report.verified} of {report.total} audit entries do not verify",
            code=6,
        )


@audit_app.command("log")
def audit_log(
    patient: PatientOption,
    key: KeyOption,
    url: UrlOption,
    password_file: PasswordFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The patient's access log as the node reports it (use `audit verify` to check it)."""
    with signed_in(url, key, password_file) as rc:
        items = rc.access_log(patient)
    if as_json:
        echo_json(items)
        return
    out = console()
    out.print(f"[bold]{len(items)}[/bold] access-log entries of {escape(patient)} (unverified)")
    for item in items:
        entry = item.get("entry")
        if isinstance(entry, Mapping):
            check = EntryCheck(entry=entry, tx_id=str(entry.get("tx")), leaf_index=-1,
                               leaf_hash=None, ok=False)  # fmt: skip
            out.print(f"  {escape(entry_line(check))}")


def register(app: typer.Typer) -> None:
    """Add the records commands to the ``carechain`` app."""
    app.add_typer(records_app, name="records")
    app.add_typer(consent_app, name="consent")
    app.add_typer(audit_app, name="audit")
    app.command("erase")(erase)
    app.command("break-glass")(break_glass)


__all__ = [
    "audit_app",
    "consent_app",
    "consent_resource",
    "entry_line",
    "print_report",
    "records_app",
    "register",
]

"""``carechain trials register|amend|enrol|sae|results|list|show|report``, and the trial and
incentive steps of ``carechain demo --trials``.

Writes are ``trials.*`` transactions signed with a key of the local keyring (``--key NAME`` in
``--dir``; password from ``--password-file``, else ``$CARECHAIN_PASSWORD``, else a prompt)
through the SDK's :class:`~carechain.client.trials.TrialsClient`. A rejected transaction exits
with its code: 3 ``unauthorized``, 4 ``unknown_*``, 5 ``duplicate_*``/``already_*``, 2 other.
``report --verify`` proves every version against a signed checkpoint and recomputes the
switches locally (exit 6 when the node's report does not match the signed versions).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from carechain.cli.common import DirOption, exit_code_for, exit_with_error
from carechain.cli.options import JsonFlag, UrlOption, echo_json, make_client
from carechain.cli.render import console, fmt_time
from carechain.client import Client
from carechain.client.models import Result
from carechain.client.trials import TrialsClient
from carechain.contracts.identity import patient_account_id
from carechain.crypto.keystore import PASSWORD_ENV, Keyring, resolve_password
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import b64u_encode
from carechain.errors import LedgerError
from carechain.node.chaindir import ChainPaths

trials_app = typer.Typer(
    help="Clinical-trial registry: register, amend, enrol, adverse events, results, reports.",
    no_args_is_help=True,
)
KeyOption = Annotated[
    str, typer.Option("--key", metavar="NAME", help="Keyring key that signs (in --dir).")
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        dir_okay=False,
        help=f"Password of the key (else ${PASSWORD_ENV}, else a prompt).",
    ),
]


def contract_exit(code: str) -> int:
    """Exit code of a rejected transaction."""
    if code == "unauthorized":
        return 3
    if code.startswith("unknown_"):
        return 4
    if code.startswith(("duplicate_", "already_")):
        return 5
    return 2


@dataclass
class Signer:
    """A keyring key and the account it signs for."""

    client: Client
    account: str
    key: PrivateKey


@contextmanager
def signer(
    url: str, data_dir: Path, key: str | None, password_file: Path | None
) -> Iterator[Signer]:
    """An SDK client pinned to ``data_dir``'s genesis (if any) and, with ``key``, its signer."""
    try:
        paths = ChainPaths(data_dir)
        genesis = paths.genesis if paths.exists() else None
        with make_client(url, genesis=genesis) as client:
            if key is None:
                yield Signer(client, "", None)  # type: ignore[arg-type]
                return
            ring = Keyring(data_dir)
            info = ring.get_info(key)
            password = resolve_password(password_file, prompt=lambda: _ask(key))
            priv = ring.load(key, password)
            yield Signer(client, info.account or patient_account_id(priv.kid), priv)
    except LedgerError as exc:
        exit_with_error(str(exc), getattr(exc, "code", None), exit_code_for(exc))


def _ask(key: str) -> str:
    text: str = typer.prompt(f"Password of key {key}", hide_input=True)
    return text


def done(result: Result, what: str) -> None:
    """Print a committed result, or exit with the rejection's code."""
    if not result.ok:
        exit_with_error(
            f"{what} was rejected: {result.message}", f"code {result.code}",
            contract_exit(result.code),
        )  # fmt: skip
    typer.echo(f"{what}: committed in block {result.height} (tx {result.tx_id.hex()})")


def _outcome(text: str) -> dict[str, str]:
    measure, sep, frame = text.rpartition("@")
    if not sep or not measure.strip() or not frame.strip():
        exit_with_error(f"outcome {text!r}: want 'MEASURE@TIME FRAME'")
    return {"measure": measure.strip(), "time_frame": frame.strip()}


def file_digest(path: Path) -> str:
    """Keyed digest of a document: HMAC is the sponsor's; here SHA-256 of the bytes, the
    stand-in the demo uses (the registry only compares what the sponsor commits to)."""
    return b64u_encode(hashlib.sha256(path.read_bytes()).digest())


OutcomeOption = Annotated[list[str] | None, typer.Option(help="'MEASURE@TIME FRAME' (repeatable).")]


@trials_app.command("register")
def register_cmd(
    trial: Annotated[str, typer.Argument(help="Registry identifier, e.g. KCT0012345.")],
    title: Annotated[str, typer.Option("--title")],
    phase: Annotated[str, typer.Option("--phase", help="research-study-phase code.")],
    protocol: Annotated[Path, typer.Option("--protocol", dir_okay=False, exists=True)],
    planned: Annotated[int, typer.Option("--planned", help="Planned enrolment.")],
    key: KeyOption,
    url: UrlOption,
    data_dir: DirOption,
    primary: OutcomeOption = None,
    secondary: OutcomeOption = None,
    password_file: PasswordFileOption = None,
) -> None:
    """Register a trial (version 1; registration time = block time)."""
    with signer(url, data_dir, key, password_file) as s:
        args: dict[str, Any] = {
            "id": trial, "title": title, "phase": phase, "protocol": file_digest(protocol),
            "primary": [_outcome(o) for o in primary or []],
            "secondary": [_outcome(o) for o in secondary or []], "planned_enrolment": planned,
        }  # fmt: skip
        done(TrialsClient(s.client).register(s.account, s.key, args), f"registered {trial}")


@trials_app.command("amend")
def amend_cmd(
    trial: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option("--reason")],
    key: KeyOption,
    url: UrlOption,
    data_dir: DirOption,
    title: Annotated[str | None, typer.Option("--title")] = None,
    planned: Annotated[int | None, typer.Option("--planned")] = None,
    primary: OutcomeOption = None,
    secondary: OutcomeOption = None,
    password_file: PasswordFileOption = None,
) -> None:
    """Amend a trial: a new version with a reason (changes to primary outcomes after enrolment
    began are flagged in the public report)."""
    fields: dict[str, Any] = {}
    if title is not None:
        fields["title"] = title
    if planned is not None:
        fields["planned_enrolment"] = planned
    if primary:
        fields["primary"] = [_outcome(o) for o in primary]
    if secondary:
        fields["secondary"] = [_outcome(o) for o in secondary]
    with signer(url, data_dir, key, password_file) as s:
        done(TrialsClient(s.client).amend(s.account, s.key, trial, reason, **fields), "amended")


@trials_app.command("enrol")
def enrol_cmd(
    trial: Annotated[str, typer.Argument()],
    consent: Annotated[str, typer.Option("--consent", help="The participant's HRESCH consent.")],
    key: KeyOption,
    url: UrlOption,
    data_dir: DirOption,
    password_file: PasswordFileOption = None,
) -> None:
    """Enrol a participant on the strength of their research consent (a count, no PHI)."""
    with signer(url, data_dir, key, password_file) as s:
        done(TrialsClient(s.client).enrol(s.account, s.key, trial, consent), "enrolled")


@trials_app.command("sae")
def sae_cmd(
    trial: Annotated[str, typer.Argument()],
    subject: Annotated[int, typer.Option("--subject", help="Enrolment number.")],
    onset: Annotated[int, typer.Option("--onset", help="Onset, Unix ms.")],
    category: Annotated[str, typer.Option("--category", help="Event code (e.g. MedDRA).")],
    key: KeyOption,
    url: UrlOption,
    data_dir: DirOption,
    fatal: Annotated[bool, typer.Option("--fatal")] = False,
    password_file: PasswordFileOption = None,
) -> None:
    """Report a serious adverse event (late reports are kept and flagged)."""
    with signer(url, data_dir, key, password_file) as s:
        tc = TrialsClient(s.client)
        done(tc.report_sae(s.account, s.key, trial, subject=subject, onset=onset, fatal=fatal,
                           category=category), "reported")  # fmt: skip


@trials_app.command("results")
def results_cmd(
    trial: Annotated[str, typer.Argument()],
    data: Annotated[Path, typer.Option("--data", dir_okay=False, exists=True)],
    key: KeyOption,
    url: UrlOption,
    data_dir: DirOption,
    primary: OutcomeOption = None,
    secondary: OutcomeOption = None,
    password_file: PasswordFileOption = None,
) -> None:
    """Report results against outcomes (compared with the registered ones)."""
    with signer(url, data_dir, key, password_file) as s:
        tc = TrialsClient(s.client)
        done(tc.report_results(s.account, s.key, trial,
                               primary=[_outcome(o) for o in primary or []],
                               secondary=[_outcome(o) for o in secondary or []],
                               data=file_digest(data)), "results reported")  # fmt: skip


@trials_app.command("list")
def list_cmd(url: UrlOption, data_dir: DirOption, as_json: JsonFlag = False) -> None:
    """Registered trials."""
    with signer(url, data_dir, None, None) as s:
        items = TrialsClient(s.client).list()
    if as_json:
        echo_json(items)
        return
    for t in items:
        typer.echo(
            f"{t['id']}  v{t['version']}  {t['status']:<10} {t['phase']:<12} enrolled "
            f"{t['enrolled']}/{t['planned_enrolment']}  flags {t['flags']}  {t['title']}"
        )


def print_report(report: dict[str, Any]) -> None:
    """An outcome-switching report as text."""
    out = console()
    colour = "red" if report["switched"] else "green"
    out.print(
        f"trial {report['trial']} (sponsor {report['sponsor']}): {report['versions']} versions; "
        f"[{colour}]{'primary outcome SWITCHED' if report['switched'] else 'no switch'}"
        f"[/{colour}]"
    )
    pre = "; ".join(f"{o['measure']} ({o['time_frame']})" for o in report["pre_specified"])
    out.print(f"  pre-specified primary: {escape(pre)}")
    if report["reported"]:
        rep = "; ".join(f"{o['measure']} ({o['time_frame']})" for o in report["reported"])
        out.print(f"  reported primary:      {escape(rep)}")
    for c in report["changes"]:
        when = fmt_time(int(c["time"]))
        tail = f" (was {c['from']})" if "from" in c else ""
        flag = " AFTER ENROLMENT BEGAN" if c["after_enrolment"] else ""
        out.print(
            f"  {c['stage']} v{c['version']} {when}: {c['change']} {escape(c['measure'])} "
            f"[{escape(c['time_frame'])}]{escape(tail)}{flag}"
        )
    out.print(
        f"  proofs: {len(report['proofs'])} transactions (every version, then the results) "
        f"in the log of size {report['tree_size']}"
    )


@trials_app.command("show")
def show_cmd(
    trial: Annotated[str, typer.Argument()], url: UrlOption, data_dir: DirOption,
) -> None:  # fmt: skip
    """A trial with all its versions, adverse events and results (JSON)."""
    with signer(url, data_dir, None, None) as s:
        echo_json(TrialsClient(s.client).get(trial))


@trials_app.command("report")
def report_cmd(
    trial: Annotated[str, typer.Argument()],
    url: UrlOption,
    data_dir: DirOption,
    verify: Annotated[bool, typer.Option("--verify", help="Prove and recompute.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """The public outcome-switching report (``--verify``: every version proven against a
    signed checkpoint and the switches recomputed from the signed transactions)."""
    with signer(url, data_dir, None, None) as s:
        tc = TrialsClient(s.client)
        if verify:
            verified = tc.verify_report(trial)
            report = dict(verified.report)
        else:
            report = dict(tc.report(trial))
    if as_json:
        echo_json(report)
        return
    print_report(report)
    if verify:
        typer.echo(
            f"verified: {len(verified.proofs)} transactions proven against the signed "
            f"checkpoint of size {verified.proofs[0].tree_size}; switches recomputed locally"
        )


def json_arg(text: str) -> Any:
    """Parse a JSON command-line value."""
    try:
        return json.loads(text)
    except ValueError as exc:
        exit_with_error(f"not JSON: {exc}")


__all__ = ["Signer", "contract_exit", "done", "print_report", "signer", "trials_app"]


# -- carechain demo --trials --------------------------------------------------------------------


def run_trials_demo(client: Client, out: Any, data_dir: Path) -> None:
    """The trial registry and prevention-incentive steps of ``carechain demo --trials``."""
    from carechain.cli.demo import Demo, DemoFailed
    from carechain.client.client import now_ms
    from carechain.client.incentives import IncentivesClient
    from carechain.contracts.incentives import iso_date
    from carechain.crypto.signatures import generate_key
    from carechain.errors import NotFoundError
    from carechain.ledger.tx import SignedTx
    from carechain.node.chaindir import DEMO_PASSWORD
    from carechain.node.trials import RESEARCHER, SPONSOR_ORG, admit_demo_sponsor

    ring = Keyring(data_dir)
    d = Demo(client, out)
    d.say(f"A research sponsor joins the consortium: {SPONSOR_ORG}, admitted by vote")

    def exists(account: str) -> bool:
        try:
            client.account(account)
        except NotFoundError:
            return False
        return True

    def submit(txs: list[SignedTx]) -> None:
        for r in client.submit(txs):
            if not r.ok:
                raise DemoFailed(f"admitting {SPONSOR_ORG}: {r.code}: {r.message}")

    def build(kind: str, sender: str, args: dict[str, Any], keys: list[PrivateKey]) -> SignedTx:
        return client.build(kind, sender, args, keys)

    created = admit_demo_sponsor(build, submit, ring, DEMO_PASSWORD, exists)
    d.fact(
        f"admitted by seoul-general, hanbit-pharmacy and nhis-payer (3 of 5); {', '.join(created)}"
        if created
        else f"{SPONSOR_ORG} is already a member: the demo chain admitted it by that vote when "
        "it was created (`carechain init --demo`)"
    )
    pi_key = ring.load(RESEARCHER, DEMO_PASSWORD)
    pi = f"{SPONSOR_ORG}.{RESEARCHER}"
    p1 = ring.load("patient-1", DEMO_PASSWORD)
    pt = patient_account_id(p1.kid)
    tc = TrialsClient(client)
    suffix = now_ms() % 10**7
    trial = f"KCT{suffix:07d}"
    primary = [{"measure": "HbA1c change from baseline", "time_frame": "24 weeks"}]
    switched = [{"measure": "Fasting plasma glucose", "time_frame": "12 weeks"}]
    digest = b64u_encode(hashlib.sha256(f"protocol {trial} v1".encode()).digest())

    def ok(result: Result, what: str) -> Result:
        if not result.ok:
            raise DemoFailed(f"{what} was rejected: {result.code}: {result.message}")
        d.fact(f"{what}: block {result.height}, log index {result.log_index}")
        return result

    d.say(f"A research sponsor registers trial {trial} (pre-specified outcomes)")
    ok(tc.register(pi, pi_key, {
        "id": trial, "title": "Drug X versus placebo in type 2 diabetes", "phase": "phase-3",
        "protocol": digest, "primary": primary,
        "secondary": [{"measure": "Body weight change", "time_frame": "24 weeks"}],
        "planned_enrolment": 240}), f"{pi} registered {trial}")  # fmt: skip
    d.proves("the registration time is the block time, not a date the sponsor chose")
    d.say("An amendment before enrolment (sample size): a new version with a reason")
    ok(tc.amend(pi, pi_key, trial, "sample size re-estimated", planned_enrolment=300), "v2")
    d.say("A participant consents to research (HRESCH) and is enrolled: a count, no PHI")
    t = now_ms()
    grant = client.build("consent.grant@1", pt, {
        "actions": ["read"], "decision": "permit", "grantee": {"org": SPONSOR_ORG},
        "period": {"start": t - 3_600_000, "end": t + 365 * 86_400_000},
        "purposes": ["HRESCH"], "scope": {}}, p1)  # fmt: skip
    d.submit_ok(grant)
    ok(tc.enrol(pi, pi_key, trial, grant.tx_id.hex()[:16]), "enrolled participant 1")
    d.say("The sponsor switches the primary outcome after enrolment began")
    ok(tc.amend(pi, pi_key, trial, "sponsor decision", primary=switched), "v3")
    d.fact(f"v3 flagged: {tc.get(trial)['versions'][-1]['flagged']}")
    d.say("A serious adverse event, reported within the window")
    onset = int(tc.get(trial)["trial"]["registered"]["time"]) + 1
    ok(tc.report_sae(pi, pi_key, trial, subject=1, onset=onset, fatal=False,
                     category="10019211"), "SAE 1")  # fmt: skip
    d.say("Results are reported against the switched outcome")
    data = b64u_encode(hashlib.sha256(b"results").digest())
    ok(tc.report_results(pi, pi_key, trial, primary=switched, secondary=[],  # type: ignore[arg-type]
                         data=data), "results")  # fmt: skip
    d.say("The public outcome-switching report, verified by the SDK")
    verified = tc.verify_report(trial)
    print_report(dict(verified.report))
    if not verified.switched:
        raise DemoFailed("the report does not expose the switched primary outcome")
    d.proves(
        f"{len(verified.proofs)} transactions proven in the signed log (size "
        f"{verified.proofs[0].tree_size}); the switch is recomputed from signed transactions"
    )
    d.say("Someone else tries to amend the trial")
    kim = ring.load("dr-kim", DEMO_PASSWORD)
    bad = tc.amend("seoul-general.dr-kim", kim, trial, "quiet fix", title="renamed")
    if bad.ok:
        raise DemoFailed("a non-sponsor amended the trial")
    d.fact(f"rejected ({bad.code}) and kept in block {bad.height} as evidence")

    inc = IncentivesClient(client)
    today = now_ms() // 86_400_000
    prog = f"walk-{suffix}"
    payer_key = ring.load("nhis-payer-admin", DEMO_PASSWORD)
    d.say(f"A payer defines programme {prog}: >= 8,000 steps on >= 20 of the last 30 days")
    ok(inc.define("nhis-payer.admin", payer_key, {
        "id": prog, "title": "Walk 8,000 steps on 20 days", "grace_days": 40,
        "period": {"start": iso_date(today - 30), "end": iso_date(today - 1)},
        "rule": {"metric": "steps", "threshold": 8000, "min_days": 20, "points": 100,
                 "per_extra_day": 10, "cap": 150}, "budget": 10_000}), "defined")  # fmt: skip
    d.say("The patient joins and binds a wearable (signed by patient and device)")
    ok(inc.join(pt, p1, prog), "joined")
    watch = generate_key()
    ok(inc.bind_device(pt, p1, watch), f"bound device dev-{watch.kid[:20]}")
    d.say("A month of signed daily attestations (24 days over 8,000 steps)")
    txs = [inc.attestation(watch, prog, pt, iso_date(today - n), 9000 if n <= 24 else 4000)
           for n in range(1, 31)]  # fmt: skip
    results = client.submit(txs)
    if not all(r.ok for r in results):
        raise DemoFailed(f"an attestation was rejected: {[r.code for r in results if not r.ok]}")
    d.fact(f"30 attestations committed in block {results[0].height}")
    again = inc.attest(watch, prog, pt, iso_date(today - 1), 12000)
    d.fact(f"a second attestation for one day: rejected ({again.code})")
    d.say("The period closes: points from the budget to the patient's wallet")
    ok(inc.close("nhis-payer.admin", payer_key, prog), "closed")
    points = inc.balance(pt, "nhis-payer")
    d.fact(f"{pt} holds {points} points of nhis-payer")
    over = inc.transfer(pt, p1, patient_account_id(ring.load("patient-2", DEMO_PASSWORD).kid),
                        "nhis-payer", points + 1)  # fmt: skip
    d.fact(f"transfer over the balance: rejected ({over.code})")
    ok(inc.redeem(pt, p1, "nhis-payer", min(points, 100), "gym-voucher"), "redeemed")
    d.proves("points follow the programme's rule and budget; no overdraft; not money")

"""``carechain supply capture|verify|timeline|events|pedigree|verify-history`` and the supply
walk-through of ``carechain demo --supply``.

Writes (captures) are signed by the node with the custodial key of ``--key NAME`` (signed in
with its password: ``--password-file``, else ``$CARECHAIN_PASSWORD``, else a prompt). A capture
the custody rules refuse exits 2 and prints the rejection code and the items flagged as
suspect; schema errors and event-hash mismatches exit with the 422 family's code.
``verify-history`` checks an exported pedigree offline against a genesis file only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from carechain.cli.common import exit_code_for, exit_with_error
from carechain.cli.options import GenesisOption, JsonFlag, UrlOption, echo_json, make_client
from carechain.client import Client
from carechain.client.supply import SupplyClient, verify_pedigree
from carechain.crypto.keystore import resolve_password
from carechain.epcis.mapping import build_document, commissioning_document, iso
from carechain.errors import LedgerError

supply_app = typer.Typer(
    help="Supply chain: EPCIS capture, DSCSA verification, timelines, pedigrees.",
    no_args_is_help=True,
)
KeyOption = Annotated[
    str, typer.Option("--key", metavar="NAME", help="Node keyring key to sign in as.")
]
PasswordFile = Annotated[Path | None, typer.Option("--password-file", dir_okay=False)]
out = Console(highlight=False, soft_wrap=True)


@contextmanager
def _session(url: str, key: str | None, password_file: Path | None) -> Iterator[SupplyClient]:
    try:
        with make_client(url) as client:
            sc = SupplyClient(client)
            if key is not None:
                sc.login(
                    key,
                    resolve_password(
                        password_file,
                        prompt=lambda: typer.prompt(f"password of {key}", hide_input=True),
                    ),
                )
            yield sc
    except LedgerError as exc:
        exit_with_error(str(exc), exc.code, exit_code_for(exc))


@supply_app.command("capture")
def capture(
    document: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    key: KeyOption,
    url: UrlOption,
    password_file: PasswordFile = None,
    profile: Annotated[str, typer.Option(help="dscsa (custody rules) or evidence")] = "dscsa",
    as_json: JsonFlag = False,
) -> None:
    """Capture an EPCIS 2.0 JSON-LD document (or one event) as one ledger transaction."""
    with _session(url, key, password_file) as sc:
        res = sc.capture(document.read_bytes(), profile=profile)
    if as_json:
        echo_json(res.body)
    elif res.ok:
        out.print(
            f"captured: {len(res.body['events'])} event(s) in tx {res.body['captureID']} "
            f"(block {res.body['height']})"
        )
        for e in res.body["events"]:
            out.print(f"  {e['hashID']}  eventID check: {e['check']}")
    else:
        out.print(f"[red]refused[/red]: {res.code}: {escape(str(res.body.get('detail')))}")
        if res.body.get("flagged"):
            out.print(f"flagged as suspect: {', '.join(res.body['flagged'])}")
    if not res.ok:
        raise typer.Exit(2)


@supply_app.command("verify")
def verify(
    gtin: Annotated[str, typer.Option()],
    serial: Annotated[str, typer.Option()],
    lot: Annotated[str, typer.Option()],
    expiry: Annotated[str, typer.Option(help="YYYY-MM-DD")],
    key: KeyOption,
    url: UrlOption,
    password_file: PasswordFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Verify a product identifier (exit 0 verified, 1 not verified)."""
    with _session(url, key, password_file) as sc:
        res = sc.verify(gtin=gtin, serial=serial, lot=lot, expiry=expiry)
    if as_json:
        echo_json(res)
    else:
        out.print(
            ("VERIFIED" if res["verified"] else "NOT VERIFIED") + f": {res['reason']} "
            f"({res['item']})"
        )
    if not res["verified"]:
        raise typer.Exit(1)


@supply_app.command("timeline")
def timeline(item: str, url: UrlOption, as_json: JsonFlag = False) -> None:
    """An item's custody timeline (``01/<gtin>/21/<serial>`` or ``00/<sscc>``)."""
    with _session(url, None, None) as sc:
        tl = sc.timeline(item)
    if as_json:
        echo_json(tl)
        return
    rec = tl["item"]
    out.print(
        f"{item}: {rec['status']} at {rec['owner']}"
        + (f"  [red]SUSPECT {tl['suspect']['status']}[/red]" if tl["suspect"] else "")
    )
    for h in tl["history"]:
        out.print(f"  {iso(h['time'])}  {h['step']:<15} {h['owner']:<18} tx {h['tx'][:16]}")


@supply_app.command("events")
def events(epc: str, url: UrlOption) -> None:
    """``GET /epcis/events?MATCH_epc=…`` as JSON."""
    with _session(url, None, None) as sc:
        echo_json(sc.events(epc))


@supply_app.command("pedigree")
def pedigree(
    item: str,
    url: UrlOption,
    output: Annotated[Path, typer.Option("-o", "--output", dir_okay=False)] = Path("pedigree.json"),
) -> None:
    """Export an item's pedigree (each step with its inclusion proof) to one file."""
    with _session(url, None, None) as sc:
        export = sc.pedigree(item)
    output.write_text(json.dumps(export, indent=2))
    out.print(f"wrote {output}: {len(export['steps'])} step(s), checkpoint size {export['size']}")


@supply_app.command("verify-history")
def verify_history(
    export: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    genesis: GenesisOption = None,
) -> None:
    """Verify an exported pedigree offline against the chain's genesis file (exit 6 if not)."""
    if genesis is None:
        exit_with_error("--genesis is required: the genesis document is the trust root")
    try:
        report = verify_pedigree(json.loads(export.read_text()), genesis.read_bytes())
    except LedgerError as exc:
        exit_with_error(str(exc), exc.code, 6)
    for step, tx, ok, problem in report.steps:
        out.print(f"  {'ok ' if ok else 'BAD'} {step:<15} tx {tx[:16]} {escape(problem)}")
    out.print(
        f"{report.item}: {'verified' if report.ok else 'NOT verified'} "
        f"({len(report.steps)} step(s) against checkpoint size {report.size})"
    )
    if not report.ok:
        raise typer.Exit(6)


# -- carechain demo --supply ---------------------------------------------------------------------


class SupplyDemo:
    """Manufacturer → wholesaler → pharmacy, a counterfeit, and a diverted case."""

    def __init__(self, client: Client, console: Console, data_dir: Path | None = None) -> None:
        from carechain.node.supply.demo import DEMO_GLNS, DRUG_GTIN, WHOLESALER

        self.client, self.out, self.data_dir = client, console, data_dir
        self.glns, self.gtin, self.whs = DEMO_GLNS, DRUG_GTIN, WHOLESALER
        self.t = 0

    def setup(self) -> None:
        """The wholesaler, trading partners and products, if not there yet (signed with the
        demo keys of ``--dir``; committed state read from the local store)."""
        if self.data_dir is None:
            return
        import orjson

        from carechain.cli.options import local_store
        from carechain.crypto.keystore import Keyring
        from carechain.node.chaindir import DEMO_PASSWORD
        from carechain.node.node import now_ms
        from carechain.node.supply.demo import ensure_supply_demo

        def state(key: str) -> Any:
            with local_store(self.data_dir) as (store, _):  # type: ignore[arg-type]
                raw = store.find_state(key)
            return None if raw is None else orjson.loads(raw)

        def submit(txs: list[Any]) -> None:
            self.client.submit(txs)

        ensure_supply_demo(self.client.build, submit, Keyring(self.data_dir), DEMO_PASSWORD,
                           state, now_ms())  # fmt: skip

    def who(self, org: str) -> SupplyClient:
        return SupplyClient(self.client).login(f"{org}-admin", "demo")

    def ev(self, **fields: Any) -> dict[str, Any]:
        from carechain.node.node import now_ms

        self.t = max(self.t + 1, now_ms() - 5_000)
        return {
            "type": "ObjectEvent",
            "eventTime": iso(self.t),
            "eventTimeZoneOffset": "+00:00",
            **fields,
        }

    def ship_to(self, epcs: list[str], org: str) -> bytes:
        gln = self.glns[org]
        return build_document(
            [
                self.ev(
                    action="OBSERVE",
                    bizStep="shipping",
                    epcList=epcs,
                    destinationList=[
                        {"type": "owning_party", "destination": f"https://id.gs1.org/417/{gln}"}
                    ],
                )
            ]
        )

    def step(self, who: SupplyClient, title: str, doc: bytes, want_ok: bool = True) -> Any:
        res = who.capture(doc)
        mark = "ok" if res.ok else f"refused ({res.code})"
        self.out.print(f"• {title}: {mark} — tx {res.body['captureID'][:16]}")
        if res.ok != want_ok:
            raise RuntimeError(f"{title}: unexpected {mark}")
        return res

    def run(self) -> None:
        import os

        from carechain.epcis.event_hash import gs1_check_digit
        from carechain.node.node import now_ms

        tag = os.urandom(3).hex().upper()
        lot, expiry = f"LOT{tag}", "2028-12-31"
        serials = [f"{tag}{i:03d}" for i in range(1, 7)]
        body = f"08801234{int(tag, 16) % 10**9:09d}"
        case = f"https://id.gs1.org/00/{body}{gs1_check_digit(body)}"
        packs = [f"https://id.gs1.org/01/{self.gtin}/21/{s}" for s in serials]
        self.setup()
        mfr, whs, ph = self.who("medipharm"), self.who(self.whs), self.who("hanbit-pharmacy")
        self.out.print("[bold]Supply chain (DSCSA custody on EPCIS 2.0)[/bold]")
        self.step(
            mfr,
            f"MediPharm commissions lot {lot} ({len(packs)} packs)",
            commissioning_document(
                gtin=self.gtin,
                serials=serials,
                lot=lot,
                expiry=expiry,
                time_ms=now_ms() - 4_000,
                gln=self.glns["medipharm"],
            ),
        )
        agg = self.ev(action="ADD", bizStep="packing", parentID=case, childEPCs=packs)
        agg["type"] = "AggregationEvent"
        self.step(mfr, "MediPharm packs them into a case", build_document([agg]))
        self.step(mfr, "MediPharm ships the case to the wholesaler", self.ship_to([case], self.whs))
        self.step(
            whs,
            "wholesaler receives it",
            build_document([self.ev(action="OBSERVE", bizStep="receiving", epcList=[case])]),
        )
        self.step(
            whs, "wholesaler ships it to Hanbit Pharmacy", self.ship_to([case], "hanbit-pharmacy")
        )
        self.step(
            ph,
            "pharmacy receives it",
            build_document([self.ev(action="OBSERVE", bizStep="receiving", epcList=[case])]),
        )
        v = ph.verify(gtin=self.gtin, serial=serials[0], lot=lot, expiry=expiry)
        self.out.print(
            f"• pharmacy verifies {serials[0]}: verified={v['verified']} ({v['reason']})"
        )
        self.step(
            ph,
            f"pharmacy dispenses {serials[0]}",
            build_document([self.ev(action="OBSERVE", bizStep="dispensing", epcList=[packs[0]])]),
        )
        fake = ph.verify(gtin=self.gtin, serial=f"FAKE{tag}", lot=lot, expiry=expiry)
        self.out.print(
            f"• a counterfeit serial fails verification: verified={fake['verified']} "
            f"({fake['reason']})"
        )
        res = self.step(
            whs,
            "wholesaler (no longer the owner) ships the case again — diversion",
            self.ship_to([case], "medipharm"),
            want_ok=False,
        )
        self.out.print(
            f"  flagged as suspect by the node: {len(res.body.get('flagged', []))} item(s)"
        )
        v2 = ph.verify(gtin=self.gtin, serial=serials[1], lot=lot, expiry=expiry)
        self.out.print(f"• a pack of the diverted case now verifies as: {v2['reason']}")


def run_supply_demo(url: str, data_dir: Path, console: Console) -> None:
    """``carechain demo --supply``."""
    with Client(url) as client:
        SupplyDemo(client, console, data_dir).run()


__all__ = ["SupplyDemo", "run_supply_demo", "supply_app"]

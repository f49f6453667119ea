"""Text and JSON views of transactions, blocks, results and proofs for the CLI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape

from carechain.client import Block, ConsistencyResult, InclusionResult, Result, TxRecord
from carechain.encoding import b64u_encode
from carechain.merkle import Checkpoint


def console() -> Console:
    """The stdout console (no syntax highlighting of numbers and paths)."""
    return Console(highlight=False, soft_wrap=True)


def fmt_time(ms: int) -> str:
    """Unix milliseconds as ISO 8601 UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _row(out: Console, label: str, value: object) -> None:
    out.print(f"  [bold]{label:<11}[/bold] {escape(str(value))}")


def receipt_text(receipt: Any) -> str:
    """One line: ``ok`` or ``rejected (code): message``."""
    if not isinstance(receipt, dict):
        return "?"
    if receipt.get("status") == "ok":
        return "ok"
    return f"rejected ({receipt.get('code')}): {receipt.get('msg', '')}"


def tx_json(rec: TxRecord) -> dict[str, Any]:
    """A transaction as JSON (the API's shape)."""
    return {
        "block_hash": rec.block_hash.hex(),
        "body": rec.tx.body.to_json(),
        "envelope_b64": b64u_encode(rec.envelope),
        "height": rec.height,
        "log_index": rec.log_index,
        "position": rec.position,
        "receipt": dict(rec.receipt),
        "tx_id": rec.tx_id.hex(),
    }


def print_tx(rec: TxRecord) -> None:
    """A transaction, its block position and its receipt."""
    out = console()
    body = rec.tx.body
    out.print(f"[bold]transaction[/bold] {rec.tx_id.hex()}")
    _row(out, "status", receipt_text(rec.receipt))
    _row(out, "kind", body.kind)
    _row(out, "sender", body.sender)
    _row(out, "created", f"{fmt_time(body.created)} ({body.created})")
    for i, s in enumerate(body.signers):
        _row(out, "signer" if i == 0 else "", f"{s.alg} key {s.kid}")
    _row(out, "block", f"{rec.height} (position {rec.position}, hash {rec.block_hash.hex()})")
    _row(out, "log index", rec.log_index)
    events = rec.receipt.get("events") or []
    for i, ev in enumerate(events if isinstance(events, list) else []):
        attrs = json.dumps(ev.get("attrs", {}), sort_keys=True) if isinstance(ev, dict) else ""
        kind = ev.get("kind") if isinstance(ev, dict) else ev
        _row(out, "event" if i == 0 else "", f"{kind} {attrs}")
    _row(out, "args", json.dumps(body.args, sort_keys=True, ensure_ascii=False))
    _row(out, "size", f"{len(rec.envelope)} bytes")


def block_json(block: Block) -> dict[str, Any]:
    """A block as JSON."""
    h = block.header
    return {
        "hash": block.hash.hex(),
        "header": {
            "chain": h.chain,
            "height": h.height,
            "log_root": h.log_root.hex(),
            "log_size": h.log_size,
            "prev": h.prev.hex(),
            "proposer": h.proposer,
            "receipt_root": h.receipt_root.hex(),
            "seal": dict(h.seal),
            "state_root": h.state_root.hex(),
            "time": h.time,
            "tx_root": h.tx_root.hex(),
            "txs": h.txs,
        },
        "header_b64": b64u_encode(block.header_bytes),
        "height": block.height,
        "seal": dict(block.seal) if block.seal is not None else None,
        "transactions": [
            {"code": t.code, "kind": t.kind, "sender": t.sender, "status": t.status,
             "tx_id": t.tx_id.hex()}
            for t in block.transactions
        ],
    }  # fmt: skip


def print_block(block: Block) -> None:
    """A block header and its transactions."""
    out = console()
    h = block.header
    out.print(f"[bold]block {h.height}[/bold] {block.hash.hex()}")
    _row(out, "time", f"{fmt_time(h.time)} ({h.time})")
    _row(out, "prev", h.prev.hex())
    _row(out, "proposer", h.proposer)
    _row(out, "seal", json.dumps(dict(h.seal), sort_keys=True))
    _row(out, "txs", h.txs)
    _row(out, "tx root", h.tx_root.hex())
    _row(out, "receipts", h.receipt_root.hex())
    _row(out, "log", f"size {h.log_size}, root {h.log_root.hex()}")
    _row(out, "state root", h.state_root.hex())
    if block.seal is not None:
        _row(out, "signed by", f"{block.seal.get('alg')} key {block.seal.get('kid')}")
    if not block.transactions:
        return
    out.print("  [bold]transactions[/bold] (#, id, kind, sender, receipt)")
    for i, t in enumerate(block.transactions):
        status = t.status if t.status == "ok" else f"{t.status} ({t.code})"
        out.print(f"  {i:>3} {t.tx_id.hex()} {escape(t.kind)} {escape(t.sender)} {escape(status)}")


def print_results(results: Sequence[Result]) -> None:
    """Submission results, one line each."""
    out = console()
    for r in results:
        where = f" block {r.height}, log index {r.log_index}" if r.height is not None else ""
        if r.status == "ok":
            out.print(f"[green]ok[/green]       {r.tx_id.hex()}{where}")
        elif r.status == "pending":
            out.print(f"[yellow]pending[/yellow]  {r.tx_id.hex()} (accepted, not yet committed)")
        else:
            out.print(
                f"[red]rejected[/red] {r.tx_id.hex()}{where}: "
                f"{escape(r.code)}: {escape(r.message)} (committed as evidence)"
            )


def results_json(results: Sequence[Result]) -> list[dict[str, Any]]:
    """Submission results as JSON."""
    return [
        {k: v for k, v in {
            "code": r.code or None, "height": r.height, "log_index": r.log_index,
            "message": r.message or None, "status": r.status, "tx_id": r.tx_id.hex(),
        }.items() if v is not None}
        for r in results
    ]  # fmt: skip


def checkpoint_line(cp: Checkpoint) -> str:
    """``origin @ size, root``."""
    return f"{cp.origin} size {cp.size} root {cp.root.hex()}"


def print_inclusion(result: InclusionResult) -> None:
    """What an inclusion proof established."""
    out = console()
    cp = result.checkpoint.checkpoint
    out.print(
        f"[green]verified[/green] transaction {result.tx.tx_id.hex()} is leaf "
        f"{result.leaf_index} of the ledger log of size {result.tree_size}"
    )
    _row(out, "leaf hash", f"{result.leaf_hash.hex()} (SHA-256(0x00 || envelope), computed here)")
    _row(out, "audit path", f"{len(result.proof)} hashes (RFC 9162 §2.1.3.2)")
    _row(out, "root", result.root.hex())
    _row(out, "checkpoint", f"{checkpoint_line(cp)}, signed by a genesis node key")
    _row(out, "block", f"{result.tx.height} (receipt: {receipt_text(result.tx.receipt)})")


def print_consistency(result: ConsistencyResult) -> None:
    """What a consistency proof established."""
    out = console()
    cp = result.checkpoint.checkpoint
    out.print(
        f"[green]verified[/green] the log of size {result.size1} is a prefix of the log of "
        f"size {result.size2} (append-only, nothing rewritten)"
    )
    _row(out, "root1", f"{result.root1.hex()} (size {result.size1})")
    _row(out, "root2", f"{result.root2.hex()} (size {result.size2})")
    _row(out, "proof", f"{len(result.proof)} hashes (RFC 9162 §2.1.4.2)")
    if result.anchor_proof:
        _row(out, "anchor", f"{len(result.anchor_proof)} hashes from size {result.size2} on")
    _row(out, "checkpoint", f"{checkpoint_line(cp)}, signed by a genesis node key")


__all__ = [
    "block_json",
    "checkpoint_line",
    "console",
    "fmt_time",
    "print_block",
    "print_consistency",
    "print_inclusion",
    "print_results",
    "print_tx",
    "receipt_text",
    "results_json",
    "tx_json",
]

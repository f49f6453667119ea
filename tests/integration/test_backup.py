"""Backup and restore drill: serve, write, back up while writing, restore, verify, replay, compare.

The node runs and a writer thread commits transactions throughout the backup (the CLI, as an
operator runs it). The restore verifies from genesis and proves the restored log contains a
checkpoint published before the backup; the transactions committed after the backup are then
replayed into a node on the restored directory, which ends with exactly the source's
transactions. Negative controls: a tampered archive (with and without a rewritten manifest), a
backup older than a published checkpoint, a forked or foreign checkpoint, a non-empty target.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
import threading
from pathlib import Path
from typing import Any

import apsw
import orjson
import pytest
from typer.testing import CliRunner, Result

from carechain.cli.main import app
from carechain.crypto.signatures import generate_key
from carechain.errors import ChainVerificationError, CheckpointError
from carechain.ledger.tx import parse_envelope
from carechain.merkle import open_checkpoint, sign_checkpoint
from carechain.node.backup import MANIFEST, backup, restore
from carechain.node.chaindir import ChainPaths, InitResult, load_node_key, open_node
from carechain.node.verify import note_verifiers
from carechain.storage.sqlite import SQLiteStore
from carechain.testing.chain_driver import Chain


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


class Writer(threading.Thread):
    """Commits one register_member transaction after another until stopped."""

    def __init__(self, chain: Chain) -> None:
        super().__init__(daemon=True)
        self.chain = chain
        self.stop = threading.Event()
        self.committed = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                account = f"medipharm.w{self.committed}"
                out = self.chain.run1(
                    self.chain.register_member("medipharm", account, generate_key())
                )
                assert out.ok, out.receipt
                self.committed += 1
        except BaseException as exc:  # reported by the test
            self.error = exc


def _envelopes(store: SQLiteStore) -> list[bytes]:
    return [store.find_envelope(i) or b"" for i in range(store.log_size())]


@pytest.fixture
def drill(demo_chain: InitResult, chain: Chain, tmp_path: Path) -> dict[str, Any]:
    root = demo_chain.paths.root
    published_before = chain.node.store.find_checkpoint()
    writer = Writer(chain)
    writer.start()
    try:
        while writer.committed < 3 and writer.error is None:  # writes before the backup
            writer.join(0.01)
        archive = tmp_path / "backup.tar"
        result = run("backup", "--dir", str(root), "--out", str(archive))
        assert result.exit_code == 0, result.output
        during = writer.committed
        while writer.committed < during + 3 and writer.error is None:  # writes after it
            writer.join(0.01)
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None, writer.error
    return {
        "root": root, "archive": archive, "chain": chain, "output": result.output,
        "published_before": published_before, "writes": writer.committed,
    }  # fmt: skip


def test_backup_while_writing_restore_verify_replay_compare(
    drill: dict[str, Any], tmp_path: Path
) -> None:
    chain: Chain = drill["chain"]
    assert "backed up" in drill["output"] and "copied online" in drill["output"]
    before = tmp_path / "published.note"
    before.write_bytes(drill["published_before"])
    target = tmp_path / "restored"
    result = run(
        "restore", str(drill["archive"]), "--dir", str(target), "--checkpoint", str(before)
    )
    assert result.exit_code == 0, result.output
    assert "restored" in result.output and "contains    published checkpoint" in result.output
    assert run("verify", "--dir", str(target)).exit_code == 0
    # compare: the restored chain is a prefix of the source, block for block
    source = list(chain.node.store.iter_blocks())
    restored_store = SQLiteStore(ChainPaths(target).ledger)
    try:
        restored = list(restored_store.iter_blocks())
        assert restored_store.integrity_check() == "ok"
    finally:
        restored_store.close()
    assert 0 < len(restored) < len(source)
    assert restored == source[: len(restored)]
    # keys and secrets came back: a node starts on the restored directory; replay the rest
    node = open_node(target)
    try:
        src_envs = _envelopes(chain.node.store)
        have = node.store.log_size()
        for raw in src_envs[:have]:  # what the backup holds is refused as a replay
            with pytest.raises(Exception, match="already"):
                node.submit([raw])
        node.submit_and_wait(src_envs[have:])  # what was written after the backup
        replayed = _envelopes(node.store)
        assert {parse_envelope(e).tx_id for e in replayed} == {
            parse_envelope(e).tx_id for e in src_envs
        }
        assert replayed == src_envs  # same order: one writer, one transaction at a time
        from carechain.node.verify import verify_store

        verify_store(node.store, node.genesis)
    finally:
        node.stop()
        node.store.close()
    print(f"BACKUP drill: writes={drill['writes']} restored_blocks={len(restored)} "
          f"replayed={len(src_envs) - have}")  # fmt: skip


def test_a_backup_older_than_a_published_checkpoint_is_refused(
    drill: dict[str, Any], tmp_path: Path
) -> None:
    latest = tmp_path / "latest.note"
    latest.write_bytes(drill["chain"].node.store.find_checkpoint())
    target = tmp_path / "stale"
    result = run(
        "restore", str(drill["archive"]), "--dir", str(target), "--checkpoint", str(latest)
    )
    assert result.exit_code == 6 and "rollback" in result.output, result.output
    assert not target.exists() and not list(tmp_path.glob(".stale.restore-*"))
    # the same as a client trust file
    trust = tmp_path / "trust.json"
    trust.write_bytes(orjson.dumps({"v": 1, "note": latest.read_text()}))
    result = run("restore", str(drill["archive"]), "--dir", str(target), "--checkpoint", str(trust))
    assert result.exit_code == 6 and "rollback" in result.output, result.output


def test_a_forked_or_foreign_checkpoint_is_refused(drill: dict[str, Any], tmp_path: Path) -> None:
    node = drill["chain"].node
    origin = node.genesis.origin
    state = dict(node.store.iter_state("node/"))
    cp = open_checkpoint(drill["published_before"], note_verifiers(state, origin), origin)
    forked = dataclasses.replace(cp, root=hashlib.sha256(b"fork").digest())
    fork_note = sign_checkpoint(forked, origin, load_node_key(drill["root"]))
    with pytest.raises(CheckpointError, match="fork"):
        restore(drill["archive"], tmp_path / "a", published=[fork_note])
    with pytest.raises(CheckpointError, match="does not verify"):
        restore(
            drill["archive"],
            tmp_path / "b",
            published=[sign_checkpoint(cp, origin, generate_key())],
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _rewrite(archive: Path, out: Path, edit: Any, *, fix_manifest: bool) -> None:
    """Copy ``archive`` to ``out`` with ``edit(name, bytes) -> bytes`` applied to each member."""
    members: dict[str, bytes] = {}
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m)
            if f is not None:
                members[m.name] = edit(m.name, f.read())
    if fix_manifest:
        manifest = orjson.loads(members[MANIFEST])
        for name, meta in manifest["files"].items():
            meta["sha256"] = hashlib.sha256(members[name]).hexdigest()
            meta["size"] = len(members[name])
        members[MANIFEST] = orjson.dumps(manifest)
    with tarfile.open(out, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _tamper_ledger(tmp_path: Path) -> Any:
    def edit(name: str, data: bytes) -> bytes:
        if name != "ledger.sqlite":
            return data
        db = tmp_path / "edit.sqlite"
        db.write_bytes(data)
        conn = apsw.Connection(str(db))
        conn.execute("UPDATE txs SET receipt = replace(receipt, 'ok', 'OK') WHERE log_index = 2")
        conn.close()
        return db.read_bytes()

    return edit


@pytest.mark.parametrize("fix_manifest", [False, True], ids=["manifest-kept", "manifest-rewritten"])
def test_a_tampered_backup_is_refused(
    drill: dict[str, Any], tmp_path: Path, fix_manifest: bool
) -> None:
    bad = tmp_path / "bad.tar"
    _rewrite(drill["archive"], bad, _tamper_ledger(tmp_path), fix_manifest=fix_manifest)
    with pytest.raises(ChainVerificationError) as info:
        restore(bad, tmp_path / "t")
    assert info.value.field == ("receipts[2]" if fix_manifest else "backup"), info.value
    assert not (tmp_path / "t").exists()
    result = run("restore", str(bad), "--dir", str(tmp_path / "t"))
    assert result.exit_code == 6, result.output
    # negative control: an untouched rewrite restores
    good = tmp_path / "good.tar"
    _rewrite(drill["archive"], good, lambda n, d: d, fix_manifest=True)
    assert restore(good, tmp_path / "ok").verify.chain.blocks > 1


def test_restore_needs_an_empty_target_and_a_real_archive(
    drill: dict[str, Any], tmp_path: Path
) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep me")
    result = run("restore", str(drill["archive"]), "--dir", str(busy))
    assert result.exit_code == 5 and "not empty" in result.output, result.output
    assert (busy / "x").read_text() == "keep me"
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar")
    assert run("restore", str(junk), "--dir", str(tmp_path / "j")).exit_code == 2
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    assert run("restore", str(evil), "--dir", str(tmp_path / "e")).exit_code == 2
    assert not (tmp_path / "escape").exists()


def test_backup_refuses_an_archive_inside_the_data_directory(demo_chain: InitResult) -> None:
    root = demo_chain.paths.root
    result = run("backup", "--dir", str(root), "--out", str(root / "b.tar"))
    assert result.exit_code == 2 and "inside the data directory" in result.output


def test_backup_of_a_stopped_chain_holds_keys_secrets_and_every_database(
    demo_chain: InitResult, tmp_path: Path
) -> None:
    report = backup(demo_chain.paths.root, tmp_path / "b.tar")
    with tarfile.open(report.out) as tar:
        names = set(tar.getnames())
    assert {"genesis.json", "ledger.sqlite", "node.json", "keys/node.key.json",
            "secrets/node.pass", MANIFEST} <= names  # fmt: skip
    assert "node.lock" not in names and not any(n.endswith(("-wal", "-shm")) for n in names)
    assert (report.out.stat().st_mode & 0o777) == 0o600

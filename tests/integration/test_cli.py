"""``carechain`` commands through typer's CliRunner (and ``node`` as a real process).

Offline commands (init, verify, block/tx show --dir) run on a chain in a temporary
directory; client commands (tx, block, proof, demo) run against a real node and the real API
served by uvicorn on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest
from typer.testing import CliRunner, Result

from carechain.cli.main import _on_fatal, app
from carechain.client.trust import TrustStore, parse_genesis
from carechain.contracts.identity import patient_account_id
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import generate_key
from carechain.encoding import b64u_encode, canonical_bytes
from carechain.errors import LedgerError
from carechain.node.chaindir import DEMO_PASSWORD, InitResult, init_chain, new_tx, open_node

FAST = ["--scrypt-n", "1024"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CARECHAIN_DIR", "CARECHAIN_URL", "CARECHAIN_PASSWORD", "CARECHAIN_TRUST_FILE"):
        monkeypatch.delenv(name, raising=False)


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input, env=env)


def assert_fails(result: Result, code: int, *messages: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    for message in messages:
        assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, LedgerError)


# -- init and offline commands ----------------------------------------------------------------


@pytest.fixture(scope="module")
def chain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo chain made by `carechain init --demo` (shared by read-only tests)."""
    root = tmp_path_factory.mktemp("cli") / "chain"
    result = CliRunner().invoke(app, ["init", "--demo", "--dir", str(root), *FAST])
    assert result.exit_code == 0, result.output
    return root


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("init", "node", "verify", "keys", "tx", "block", "proof", "demo"):
        assert command in result.stdout
    assert run().exit_code != 0 or "Usage" in run().output


def test_init_demo_prints_the_chain_and_accounts(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    result = run("init", "--demo", "--dir", str(root), *FAST)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "carechain-demo" in out and str(root.resolve()) in out.replace("\n", "")
    digest = hashlib.sha256((root / "genesis.json").read_bytes()).hexdigest()
    assert re.search(rf"genesis SHA-256 {digest}", out)
    assert "password of every demo key: demo" in out
    for name in ("seoul-general-admin", "dr-kim", "ph-lee", "patient-1", "patient-2"):
        assert name in out
    ring = Keyring(root)
    assert ring.load("dr-kim", DEMO_PASSWORD).alg == "ed25519"
    assert (root / "genesis.json").exists() and (root / "ledger.sqlite").exists()


def test_init_single_org_with_password_file(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    root = tmp_path / "one"
    result = run(
        "init", "--dir", str(root), "--org-id", "busan-clinic", "--org-name", "Busan Clinic",
        "--role", "clinic", "--role", "laboratory", "--password-file", str(pw), *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "busan-clinic-chain" in result.stdout
    Keyring(root).load("busan-clinic-admin", b"s3cret")
    genesis = json.loads((root / "genesis.json").read_bytes())
    assert genesis["orgs"][0]["roles"] == ["clinic", "laboratory"]
    assert "demo" not in result.stdout.split("accounts")[-1].split("next")[0]


def test_init_twice_is_a_conflict(chain_dir: Path) -> None:
    before = (chain_dir / "genesis.json").read_bytes()
    result = run("init", "--demo", "--dir", str(chain_dir), *FAST)
    assert_fails(result, 5, "already holds a chain")
    assert (chain_dir / "genesis.json").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "spaceport"], "--role"),
        (["--role", "clinic", "--role", "clinic"], "repeated"),
        (["--chain", "Bad Chain"], "--chain"),
        (["--org-id", "Bad Org"], "--org-id"),
    ],
    ids=["unknown-role", "repeated-role", "chain-id", "org-id"],
)
def test_init_rejects_bad_input_before_writing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    root = tmp_path / "x"
    result = run("init", "--dir", str(root), *args, *FAST, env={"CARECHAIN_PASSWORD": "pw"})
    assert_fails(result, 2, message)
    assert not root.exists()


def test_verify_passes(chain_dir: Path) -> None:
    result = run("verify", "--dir", str(chain_dir))
    assert result.exit_code == 0, result.output
    assert "verified chain carechain-demo" in result.stdout
    assert "every block sealed by an active node key" in result.stdout  # not a public chain
    # `init --demo` seeds members and patients, then the domain demo data (several blocks)
    blocks = re.search(r"blocks\s+(\d+) ", result.stdout)
    txs = re.search(r"txs\s+(\d+)", result.stdout)
    size = re.search(r"log root\s+[0-9a-f]{64} \(size (\d+)\)", result.stdout)
    assert blocks and txs and size, result.stdout
    assert int(blocks[1]) > 2 and int(txs[1]) > 6 and int(size[1]) == int(txs[1])
    assert "tx/s" in result.stdout


def _flip(path: Path, sql_get: str, sql_set: str, marker: bytes, offset: int) -> None:
    conn = apsw.Connection(str(path))
    try:
        (value,) = conn.execute(sql_get).fetchone()  # type: ignore[misc]
        data = bytearray(value)
        at = data.index(marker) + len(marker) + offset
        data[at] = ord("A") if data[at] != ord("A") else ord("B")
        conn.execute(sql_set, (bytes(data),))
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("sql_get", "sql_set", "marker", "field"),
    [
        (
            "SELECT envelope FROM txs WHERE log_index = 2",
            "UPDATE txs SET envelope = ? WHERE log_index = 2",
            b'"sigs":["',
            "block 1: envelopes[2].sigs:",
        ),
        (
            "SELECT envelope FROM txs WHERE log_index = 0",
            "UPDATE txs SET envelope = ? WHERE log_index = 0",
            b'"body":"',
            "block 1: envelopes[0]",
        ),
        (
            "SELECT receipt FROM txs WHERE log_index = 1",
            "UPDATE txs SET receipt = ? WHERE log_index = 1",
            b'"tx":"',
            "block 1: receipts[1]:",
        ),
    ],
    ids=["envelope-signature", "envelope-body", "receipt"],
)
def test_verify_detects_a_flipped_byte(
    demo_chain: InitResult, sql_get: str, sql_set: str, marker: bytes, field: str
) -> None:
    root = demo_chain.paths.root
    assert run("verify", "--dir", str(root)).exit_code == 0  # the negative control
    _flip(root / "ledger.sqlite", sql_get, sql_set, marker, 5)
    result = run("verify", "--dir", str(root))
    assert_fails(result, 6, field)


def test_block_show_offline(chain_dir: Path) -> None:
    result = run("block", "show", "1", "--dir", str(chain_dir))
    assert result.exit_code == 0, result.output
    assert "block 1" in result.stdout and "identity.register_member@1" in result.stdout
    doc = json.loads(run("block", "show", "1", "--dir", str(chain_dir), "--json").stdout)
    assert doc["height"] == 1 and len(doc["transactions"]) == 6
    assert doc["header"]["log_size"] == 6
    genesis = json.loads(run("block", "show", "0", "--dir", str(chain_dir), "--json").stdout)
    assert genesis["seal"] is None and genesis["transactions"] == []


def test_tx_show_offline(chain_dir: Path) -> None:
    block = json.loads(run("block", "show", "1", "--dir", str(chain_dir), "--json").stdout)
    tx_id = block["transactions"][0]["tx_id"]
    result = run("tx", "show", tx_id, "--dir", str(chain_dir))
    assert result.exit_code == 0, result.output
    assert tx_id in result.stdout and "identity.register_member@1" in result.stdout
    assert "status      ok" in result.stdout
    doc = json.loads(run("tx", "show", tx_id, "--dir", str(chain_dir), "--json").stdout)
    assert doc["tx_id"] == tx_id and doc["height"] == 1 and doc["log_index"] == 0


def test_show_reports_a_damaged_store(demo_chain: InitResult) -> None:
    root = demo_chain.paths.root
    conn = apsw.Connection(str(root / "ledger.sqlite"))
    try:
        (tx_id,) = conn.execute("SELECT tx_id FROM txs WHERE log_index = 0").fetchone()  # type: ignore[misc]
        conn.execute("UPDATE txs SET receipt = ? WHERE log_index = 0", (b"{broken",))
    finally:
        conn.close()
    assert_fails(run("tx", "show", tx_id.hex(), "--dir", str(root)), 2, "carechain verify")
    assert_fails(run("block", "show", "1", "--dir", str(root)), 2, "damaged")


def test_show_unknown_things_offline(chain_dir: Path) -> None:
    assert_fails(run("block", "show", "99", "--dir", str(chain_dir)), 4, "no block 99")
    assert_fails(run("tx", "show", "ab" * 32, "--dir", str(chain_dir)), 4, "not in this ledger")
    assert_fails(run("tx", "show", "xyz", "--dir", str(chain_dir)), 2, "64 hex")


@pytest.mark.parametrize(
    "args",
    [
        ["verify"],
        ["node"],
        ["block", "show", "0"],
        ["tx", "show", "ab" * 32],
    ],
    ids=["verify", "node", "block-show", "tx-show"],
)
def test_missing_chain_exits_4_with_a_hint(tmp_path: Path, args: list[str]) -> None:
    empty = tmp_path / "nothing-here"
    result = run(*args, "--dir", str(empty))
    assert_fails(result, 4, f"no chain in {empty}", "carechain init")
    assert not empty.exists()  # nothing was created


def test_dir_from_environment(chain_dir: Path) -> None:
    result = run("verify", env={"CARECHAIN_DIR": str(chain_dir)})
    assert result.exit_code == 0, result.output


# -- against a running node --------------------------------------------------------------------


def _new_patient(root: Path, name: str) -> tuple[str, dict[str, Any]]:
    info = Keyring(root, scrypt_n=1024).create(name, "ed25519", DEMO_PASSWORD)
    args = {"keys": [{"alg": info.alg, "pub": b64u_encode(info.public)}]}
    return patient_account_id(info.kid), args


def test_tx_new_submit_show_and_prove(
    live_url: str, demo_chain: InitResult, tmp_path: Path
) -> None:
    root = demo_chain.paths.root
    env = {"CARECHAIN_PASSWORD": "demo", "CARECHAIN_URL": live_url}
    account, args = _new_patient(root, "alice")
    out = tmp_path / "tx.json"
    result = run(
        "tx", "new", "identity.register_patient@1", "--sender", account, "--key", "alice",
        "--args", json.dumps(args), "--dir", str(root), "--out", str(out), env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    tx_id = re.search(r"transaction ([0-9a-f]{64})", result.stdout).group(1)  # type: ignore[union-attr]
    assert run("tx", "new", "identity.register_patient@1", "--sender", account, "--key", "alice",
               "--args", json.dumps(args), "--dir", str(root), "--out", str(out),
               env=env).exit_code == 5  # fmt: skip

    submitted = run("tx", "submit", str(out), "--json", env=env)
    assert submitted.exit_code == 0, submitted.output
    (res,) = json.loads(submitted.stdout)
    assert res["status"] == "ok" and res["tx_id"] == tx_id
    assert_fails(run("tx", "submit", str(out), env=env), 5, tx_id)

    shown = run("tx", "show", tx_id, env=env)
    assert shown.exit_code == 0, shown.output
    assert "identity.register_patient@1" in shown.stdout and account in shown.stdout

    proven = run("proof", "inclusion", tx_id, "--url", live_url)
    assert proven.exit_code == 0, proven.output
    assert f"verified transaction {tx_id} is leaf {res['log_index']}" in proven.stdout
    assert "signed by a genesis node key" in proven.stdout

    block = run("block", "show", str(res["height"]), "--url", live_url, "--json")
    assert tx_id in [t["tx_id"] for t in json.loads(block.stdout)["transactions"]]


def test_tx_new_submits_and_reports_rejection(live_url: str, demo_chain: InitResult) -> None:
    env = {"CARECHAIN_PASSWORD": "demo", "CARECHAIN_URL": live_url}
    root = str(demo_chain.paths.root)
    result = run(
        "tx", "new", "identity.revoke_key@1", "--sender", "seoul-general.dr-kim", "--key",
        "dr-kim", "--args", '{"kid": "00000000000000000000000000000000", "reason": "test"}',
        "--dir", root, env=env,
    )  # fmt: skip
    assert_fails(result, 1, "rejected by their contract")
    assert "unknown_key" in result.stdout


def test_tx_new_errors(live_url: str, demo_chain: InitResult) -> None:
    env = {"CARECHAIN_PASSWORD": "demo", "CARECHAIN_URL": live_url}
    root = str(demo_chain.paths.root)
    base = ["tx", "new", "identity.revoke_key@1", "--sender", "seoul-general.dr-kim"]
    assert_fails(run(*base, "--key", "nobody", "--dir", root, env=env), 4, "no key named")
    assert_fails(run(*base, "--key", "dr-kim", "--args", "[1]", "--dir", root, env=env), 2,
                 "JSON object")  # fmt: skip
    assert_fails(run(*base, "--key", "dr-kim", "--args", '{"a": 0.5}', "--dir", root, env=env),
                 2, "floats")  # fmt: skip
    wrong = {"CARECHAIN_PASSWORD": "wrong", "CARECHAIN_URL": live_url}
    assert_fails(run(*base, "--key", "dr-kim", "--dir", root, env=wrong), 3, "wrong password")


def test_tx_submit_ndjson_batch_from_stdin(live_url: str, demo_chain: InitResult) -> None:
    from carechain.client import Client

    with Client(live_url) as client:
        raws = []
        for i in range(3):
            account, args = _new_patient(demo_chain.paths.root, f"batch-{i}")
            key = Keyring(demo_chain.paths.root).load(f"batch-{i}", DEMO_PASSWORD)
            raws.append(client.build("identity.register_patient@1", account, args, key).raw)
    stdin = b"\n".join(raws).decode() + "\n"
    result = run("tx", "submit", "-", "--url", live_url, "--json", input=stdin)
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in json.loads(result.stdout)] == ["ok"] * 3


def test_proof_consistency(live_url: str) -> None:
    result = run("proof", "consistency", "2", "6", "--url", live_url)
    assert result.exit_code == 0, result.output
    assert "log of size 2 is a prefix of the log of size 6" in result.stdout
    assert_fails(run("proof", "consistency", "6", "2", "--url", live_url), 2, "from <= to")
    assert_fails(run("proof", "consistency", "1", "99", "--url", live_url), 2, "trusted")


def test_proof_failures_are_precise(live_url: str, demo_chain: InitResult, tmp_path: Path) -> None:
    assert_fails(run("proof", "inclusion", "ab" * 32, "--url", live_url), 4, "ab" * 32)
    other = init_chain(tmp_path / "other", chain="other-chain", scrypt_n=1024)
    result = run("proof", "inclusion", "ab" * 32, "--url", live_url, "--genesis",
                 str(other.paths.genesis))  # fmt: skip
    assert result.exit_code != 0
    assert "Traceback" not in result.output


def test_proof_refuses_a_pinned_genesis_the_node_does_not_serve(
    live_url: str, demo_chain: InitResult, tmp_path: Path
) -> None:
    """A genesis pinned with --genesis must be the one the node serves, even for a proof that
    would otherwise verify (the node keys could be the same)."""
    doc = json.loads(demo_chain.genesis.raw)
    doc["orgs"][0]["name"] = "Some Other Hospital"
    fake = tmp_path / "fake-genesis.json"
    fake.write_bytes(canonical_bytes(doc))
    tx_id = run("block", "show", "1", "--url", live_url, "--json")
    first = json.loads(tx_id.stdout)["transactions"][0]["tx_id"]
    pinned_ok = run("proof", "inclusion", first, "--url", live_url, "--genesis",
                    str(demo_chain.paths.genesis))  # fmt: skip
    assert pinned_ok.exit_code == 0, pinned_ok.output  # negative control
    assert_fails(run("proof", "inclusion", first, "--url", live_url, "--genesis", str(fake)),
                 6, "genesis mismatch")  # fmt: skip
    unpinned = run("proof", "inclusion", first, "--url", live_url)
    assert unpinned.exit_code == 0 and "pin it with --genesis" in unpinned.output


def test_proof_refuses_a_tampered_trust_file(live_url: str, tmp_path: Path) -> None:
    trust = tmp_path / "trust.json"
    assert run("proof", "consistency", "1", "6", "--url", live_url,
               "--trust-file", str(trust)).exit_code == 0  # fmt: skip
    saved = json.loads(trust.read_text())
    assert saved["size"] == 6
    saved["size"], saved["note"] = 99, saved["note"].replace("\n6\n", "\n99\n", 1)
    trust.write_text(json.dumps(saved))  # a trust file claiming a future the node never signed
    result = run("proof", "consistency", "1", "6", "--url", live_url, "--trust-file", str(trust))
    assert_fails(result, 6, "does not verify")


def test_proof_detects_a_rolled_back_node(
    demo_chain: InitResult, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The client saw size 8; the node it talks to was restored to an older state (size 6)."""
    ahead = tmp_path / "ahead"
    shutil.copytree(demo_chain.paths.root, ahead)  # same genesis, same node key
    node = open_node(ahead)
    try:
        keys = [generate_key() for _ in range(2)]
        txs = [
            new_tx(node, "identity.register_patient@1", patient_account_id(k.kid),
                   {"keys": [{"alg": k.alg, "pub": b64u_encode(k.public)}]}, [k])
            for k in keys
        ]  # fmt: skip
        node.submit_and_wait([t.raw for t in txs])
        note = node.store.find_checkpoint()
        assert note is not None
    finally:
        node.stop()
        node.store.close()
    trust = tmp_path / "trust.json"
    TrustStore(parse_genesis(demo_chain.genesis.raw), trust).update(note, lambda a, b: [])
    assert json.loads(trust.read_text())["size"] == 8
    url = request.getfixturevalue("live_url")
    result = run("proof", "consistency", "1", "6", "--url", url, "--trust-file", str(trust))
    assert_fails(result, 6, "rollback", "size 6, smaller than the trusted size 8")
    assert json.loads(trust.read_text())["size"] == 8


def test_unreachable_node(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    assert_fails(run("tx", "show", "ab" * 32, "--url", url), 1, "cannot reach")
    assert_fails(run("demo", "--url", url, "--dir", str(tmp_path)), 1, "cannot reach")


def test_demo_walks_through_every_step(live_url: str, demo_chain: InitResult) -> None:
    result = run("demo", "--url", live_url, "--dir", str(demo_chain.paths.root))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"trust root: {demo_chain.paths.genesis}" in out
    for expected in (
        "refused (duplicate_transaction)",
        "refused (bad_signature)",
        "refused (revoked_key)",
        "rejected (unauthorized)",
        "consistency proof of",
        "demo complete",
    ):
        assert expected in out, expected
    assert out.count("✓ proves:") == 10


@pytest.mark.parametrize("flag", ["--records", "--rx", "--claims", "--trials", "--supply"])
def test_domain_demos_without_a_chain_directory_say_to_pass_dir(
    tmp_path: Path, flag: str
) -> None:
    result = run("demo", flag, "--dir", str(tmp_path / "none"), "--url", "http://127.0.0.1:9")
    assert result.exit_code == 4
    assert f"{flag} signs with the demo accounts' keys" in result.output
    assert "pass --dir with the data directory" in result.output


def test_demo_refuses_another_chains_genesis(live_url: str, tmp_path: Path) -> None:
    init_chain(tmp_path / "other", chain="other-chain", scrypt_n=1024)
    result = run("demo", "--url", live_url, "--dir", str(tmp_path / "other"))
    assert_fails(result, 6, "pinned genesis mismatch")


# -- the node process ---------------------------------------------------------------------------

NODE_CMD = [sys.executable, "-c", "from carechain.cli.main import app; app()", "node"]


def test_node_serves_and_stops_cleanly_on_ctrl_c(demo_chain: InitResult) -> None:
    root = demo_chain.paths.root
    proc = subprocess.Popen(
        [*NODE_CMD, "--dir", str(root), "--port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert proc.stdout is not None
        banner = []
        for line in proc.stdout:
            banner.append(line)
            if line.startswith("try:"):
                break
        text = "".join(banner)
        base = re.search(r"on (http://127\.0\.0\.1:\d+)", text).group(1)  # type: ignore[union-attr]
        assert f"{base}/docs" in text and "explorer" in text
        assert "seoul-general.dr-kim" in text and "password of every demo key: demo" in text
        assert patient_account_id(Keyring(root).get_info("patient-1").kid) in text
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{base}/docs", timeout=10).status_code == 200
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "stopping the node" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert run("verify", "--dir", str(root)).exit_code == 0


def test_node_port_in_use(demo_chain: InitResult) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = run("node", "--dir", str(demo_chain.paths.root), "--port", str(port))
    assert_fails(result, 1, f"cannot listen on 127.0.0.1:{port}")


def test_fatal_node_error_exits_70(monkeypatch: pytest.MonkeyPatch) -> None:
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)

    monkeypatch.setattr(os, "_exit", fake_exit)
    _on_fatal(OSError("disk I/O error"))
    assert codes == [70]

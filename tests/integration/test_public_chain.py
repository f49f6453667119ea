"""Public chains (ADR 0012): ``carechain init --type public``, a mining node, HTTP submission,
``carechain verify`` checking the work, retargeting observed, open registration, stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
import orjson
import pytest
from typer.testing import CliRunner, Result

from carechain.cli.main import app
from carechain.client import Client
from carechain.contracts.identity import patient_account_id
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.encoding import b64u_encode
from carechain.ledger.block import parse_header
from carechain.ledger.pow import check_work
from carechain.node.chaindir import InitResult, new_tx, open_node
from carechain.node.consortium import chain_type
from carechain.node.miner import init_public
from carechain.node.node import Node
from carechain.testing.chain_driver import FAST_SCRYPT_N, Chain

NODE_CMD = [sys.executable, "-c", "from carechain.cli.main import app; app()", "node"]


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"CARECHAIN_PASSWORD": "pw"})


def _pub(key: PrivateKey) -> dict[str, str]:
    return {"alg": key.alg, "pub": b64u_encode(key.public)}


def _patient_tx(client: Client) -> object:
    key = generate_key("ed25519")
    account = patient_account_id(key.kid)
    return client.build("identity.register_patient@1", account, {"keys": [_pub(key)]}, key)


@pytest.fixture
def public_dir(tmp_path: Path) -> Path:
    root = tmp_path / "pub"
    result = run("init", "--type", "public", "--dir", str(root), "--scrypt-n", str(FAST_SCRYPT_N))
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def node_url(public_dir: Path) -> Iterator[str]:
    """``carechain node --dir`` as a real process on a free port."""
    proc = subprocess.Popen(
        [*NODE_CMD, "--dir", str(public_dir), "--port", "0", "--log-level", "warning"],
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
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", "".join(banner))
        assert found, "".join(banner)
        yield found.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        assert proc.returncode == 0, err


def test_init_public_through_the_cli(public_dir: Path) -> None:
    assert chain_type(public_dir) == "public"
    genesis = orjson.loads((public_dir / "genesis.json").read_bytes())
    assert genesis["params"]["pow_initial_bits16"] == 16 * 16
    assert genesis["rules"] == {"identity": {"open_registration": True}}
    # negative control: a private chain's genesis carries neither
    private = public_dir.parent / "priv"
    result = run("init", "--dir", str(private), "--scrypt-n", str(FAST_SCRYPT_N))
    assert result.exit_code == 0, result.output
    doc = orjson.loads((private / "genesis.json").read_bytes())
    assert doc["params"] == {} and "rules" not in doc and chain_type(private) == "private"


def test_node_mines_http_submissions_and_verify_checks_the_work(
    public_dir: Path, node_url: str
) -> None:
    client = Client(node_url)
    results = [client.submit(_patient_tx(client))[0] for _ in range(4)]  # type: ignore[arg-type]
    assert all(r.ok for r in results), results
    heights = [r.height for r in results]
    assert heights == sorted(heights) and len(set(heights)) == 4
    batch = client.submit([_patient_tx(client) for _ in range(3)])  # type: ignore[misc]
    assert all(r.ok for r in batch)
    conn = apsw.Connection(str(public_dir / "ledger.sqlite"))
    try:
        rows = conn.execute("SELECT height, header, header_hash FROM blocks").fetchall()
    finally:
        conn.close()
    assert len(rows) == 6  # genesis + 4 + 1
    for height, header, hash_ in rows[1:]:
        seal = parse_header(header).seal
        assert seal["kind"] == "pow" and seal["bits16"] == 256, (height, seal)
        assert check_work(hash_, 256)


def test_verify_passes_then_names_a_tampered_nonce(public_dir: Path) -> None:
    node = open_node(public_dir)
    try:
        key = generate_key("ed25519")
        tx = new_tx(node, "identity.register_patient@1", patient_account_id(key.kid),
                    {"keys": [_pub(key)]}, [key])  # fmt: skip
        node.submit_and_wait([tx.raw])
    finally:
        node.stop()
        node.store.close()
    result = run("verify", "--dir", str(public_dir))
    assert result.exit_code == 0, result.output
    assert "verified chain" in result.stdout
    assert "public: every block's proof of work" in result.stdout
    conn = apsw.Connection(str(public_dir / "ledger.sqlite"))
    try:
        (header,) = conn.execute("SELECT header FROM blocks WHERE height = 1").fetchone()  # type: ignore[misc]
        seal = parse_header(header).seal
        nonce = int(seal["nonce"])  # type: ignore[call-overload]
        tampered = header.replace(b'"nonce":%d' % nonce, b'"nonce":%d' % (nonce + 1))
        conn.execute("UPDATE blocks SET header = ? WHERE height = 1", (tampered,))
    finally:
        conn.close()
    result = run("verify", "--dir", str(public_dir))
    assert result.exit_code == 6, result.output
    assert "block 1: seal.nonce" in result.stderr or "block 1: signature" in result.stderr


def _mine_blocks(root: Path, n: int) -> list[tuple[int, int, int]]:
    """Submit ``n`` transactions one block each; ``(height, time, bits16)`` per block."""
    node = open_node(root)
    try:
        for _ in range(n):
            key = generate_key("ed25519")
            tx = new_tx(node, "identity.register_patient@1", patient_account_id(key.kid),
                        {"keys": [_pub(key)]}, [key])  # fmt: skip
            node.submit_and_wait([tx.raw], timeout=120)
        assert node.miner is not None
        return list(node.miner.stats.trace)
    finally:
        node.stop()
        node.store.close()


def test_retarget_raises_the_difficulty_when_blocks_come_too_fast(tmp_path: Path) -> None:
    root = tmp_path / "fast"
    init_public(root, bits=4, interval_ms=2000, retarget_blocks=5, scrypt_n=FAST_SCRYPT_N,
                params={"pow_max_bits16": 14 * 16})  # fmt: skip
    trace = _mine_blocks(root, 22) + _mine_blocks(root, 18)  # a restart mid-epoch
    assert [h for h, _, _ in trace] == list(range(1, 41))
    bits = [b for _, _, b in trace]
    assert bits[:5] == [64] * 5  # epoch 0: the initial difficulty
    assert bits == sorted(bits) and bits[-1] > bits[0]  # blocks far faster than 2 s: harder
    assert all(bits[i] == bits[i - 1] for i in range(1, 40) if i % 5)  # changes at boundaries
    assert max(bits) <= 14 * 16
    assert run("verify", "--dir", str(root)).exit_code == 0


def test_retarget_lowers_the_difficulty_when_blocks_come_too_slowly(tmp_path: Path) -> None:
    root = tmp_path / "slow"
    init_public(root, bits=8, interval_ms=1, retarget_blocks=5, scrypt_n=FAST_SCRYPT_N)
    trace = _mine_blocks(root, 20)
    bits = [b for _, _, b in trace]
    assert bits[:5] == [128] * 5
    assert bits == sorted(bits, reverse=True) and bits[-1] < bits[0]  # 1 ms target: easier
    assert run("verify", "--dir", str(root)).exit_code == 0


def test_stopping_the_node_interrupts_mining(tmp_path: Path) -> None:
    root = tmp_path / "hard"
    init_public(root, bits=60, scrypt_n=FAST_SCRYPT_N)  # ~10**18 hashes: never found here
    node = open_node(root)
    try:
        key = generate_key("ed25519")
        tx = new_tx(node, "identity.register_patient@1", patient_account_id(key.kid),
                    {"keys": [_pub(key)]}, [key])  # fmt: skip
        (pending,) = node.submit([tx.raw])
        while len(node.mempool):  # the producer took it: it is mining
            time.sleep(0.01)
        thread = node._thread
        assert thread is not None
    finally:
        node.stop()
    assert not thread.is_alive()  # mining was interrupted, the producer ended
    assert node.store.head_height() == 0 and not pending.future.done()  # nothing committed
    node.store.close()


# -- open registration ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def _public_demo(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    root = tmp_path_factory.mktemp("pubdemo") / "chain"
    return init_public(root, demo=True, bits=4, scrypt_n=FAST_SCRYPT_N)


@pytest.fixture
def public_chain(_public_demo: InitResult, tmp_path: Path) -> Iterator[Chain]:
    import shutil

    root = tmp_path / "chain"
    shutil.copytree(_public_demo.paths.root, root)
    node = open_node(root)
    try:
        yield Chain(node, Keyring(root, scrypt_n=FAST_SCRYPT_N))
    finally:
        node.stop()
        node.store.close()


def _register_org(chain: Chain | Node, org: str, key: PrivateKey, **over: object) -> object:
    args: dict[str, object] = {"id": org, "keys": [_pub(key)], "name": "Open Clinic",
                               "roles": ["clinic"]}  # fmt: skip
    args.update(over)
    node = chain.node if isinstance(chain, Chain) else chain
    return new_tx(node, "identity.register_org@1", f"{org}.admin", args, [key])


def test_open_registration_on_a_public_chain(public_chain: Chain) -> None:
    key, doctor = generate_key("ed25519"), generate_key("ed25519")
    out = public_chain.run1(_register_org(public_chain, "open-clinic", key))  # type: ignore[arg-type]
    assert out.ok, out.receipt
    assert public_chain.state("org/open-clinic")["roles"] == ["clinic"]
    # the self-registered admin works: it registers a practitioner of its organisation
    member = public_chain.tx(
        "identity.register_member@1",
        "open-clinic.admin",
        {"account": "open-clinic.dr-cho", "keys": [_pub(doctor)], "org": "open-clinic",
         "role": "practitioner"},
        [key],
    )  # fmt: skip
    assert public_chain.run1(member).ok
    assert public_chain.state("acct/open-clinic.dr-cho")["role"] == "practitioner"
    public_chain.verify()


def test_open_registration_is_refused_on_a_private_chain(chain: Chain) -> None:
    out = chain.run1(_register_org(chain, "open-clinic", generate_key("ed25519")))  # type: ignore[arg-type]
    assert out.code == "registration_closed"
    assert chain.state("org/open-clinic") is None


@pytest.mark.parametrize(
    ("org", "sender_org", "over", "code"),
    [
        ("c2", "other", {}, "bad_args"),  # sender is not <id>.admin
        ("c3", "c3", {"roles": ["regulator"]}, "unauthorized"),  # oversight role
        ("c4", "c4", {"roles": ["clinic", "auditor"]}, "unauthorized"),
        ("c5", "c5", {"extra": 1}, "bad_args"),
        ("seoul-general", "seoul-general", {}, "duplicate_account"),  # an existing org
    ],
)
def test_open_registration_rejections(
    public_chain: Chain, org: str, sender_org: str, over: dict[str, object], code: str
) -> None:
    key = generate_key("ed25519")
    args: dict[str, object] = {"id": org, "keys": [_pub(key)], "name": "X", "roles": ["clinic"]}
    args.update(over)
    tx = public_chain.tx("identity.register_org@1", f"{sender_org}.admin", args, [key])
    out = public_chain.run1(tx)
    assert out.code == code, out.receipt


def test_open_registration_needs_every_key_to_sign(public_chain: Chain) -> None:
    key, other = generate_key("ed25519"), generate_key("ed25519")
    args = {"id": "c6", "keys": [_pub(key), _pub(other)], "name": "X", "roles": ["clinic"]}
    out = public_chain.run1(public_chain.tx("identity.register_org@1", "c6.admin", args, [key]))
    assert out.code == "unauthorized"

"""``carechain keys``: new / list / show / export-public through typer's CliRunner."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import get_args

import pytest
import typer
from typer.testing import CliRunner, Result

from carechain.cli.common import default_dir, exit_code_for
from carechain.cli.keys import Algorithm, keys_app
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import ALGORITHMS
from carechain.encoding import canonical_bytes
from carechain.errors import (
    AuthenticationError,
    ConflictError,
    InfrastructureError,
    LedgerError,
    NotFoundError,
    ValidationError,
    VerificationError,
)

PASSWORD = "cli test password"

app = typer.Typer()
app.add_typer(keys_app, name="keys")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARECHAIN_DIR", raising=False)
    monkeypatch.delenv("CARECHAIN_PASSWORD", raising=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def run(*args: str, input: str | None = None, password: str | None = PASSWORD) -> Result:
    env = {"CARECHAIN_PASSWORD": password} if password is not None else {}
    return CliRunner().invoke(app, ["keys", *args], input=input, env=env)


def assert_clean_failure(result: Result, code: int, message: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, LedgerError)


def test_cli_algorithms_match_registry() -> None:
    assert get_args(Algorithm) == ALGORITHMS


def test_new_creates_encrypted_key(data_dir: Path) -> None:
    result = run("new", "alice", "--dir", str(data_dir), "--account", "acct-1")
    assert result.exit_code == 0, result.output
    keyring = Keyring(data_dir)
    info = keyring.get_info("alice")
    assert info.alg == "ed25519" and info.account == "acct-1"
    assert info.kid in result.stdout and "created key alice" in result.stdout
    path = data_dir / "keys" / "alice.key.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "keys").stat().st_mode) == 0o700
    assert json.loads(path.read_bytes())["kdf"]["n"] == 2**15
    assert keyring.load("alice", PASSWORD.encode()).kid == info.kid


def test_new_ml_dsa(data_dir: Path) -> None:
    result = run("new", "pq", "--alg", "ml-dsa-65", "--dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert Keyring(data_dir).get_info("pq").alg == "ml-dsa-65"


def test_new_with_password_file(data_dir: Path, tmp_path: Path) -> None:
    pw = tmp_path / "pw.txt"
    pw.write_text("from a file\n")
    result = run("new", "alice", "--dir", str(data_dir), "--password-file", str(pw))
    assert result.exit_code == 0, result.output
    Keyring(data_dir).load("alice", b"from a file")
    with pytest.raises(AuthenticationError):
        Keyring(data_dir).load("alice", PASSWORD.encode())


def test_new_prompts_with_confirmation(data_dir: Path) -> None:
    result = run(
        "new", "alice", "--dir", str(data_dir), input="typed pw\ntyped pw\n", password=None
    )
    assert result.exit_code == 0, result.output
    assert "typed pw" not in result.output  # hidden input
    Keyring(data_dir).load("alice", b"typed pw")


def test_new_prompt_mismatch_creates_nothing(data_dir: Path) -> None:
    result = run("new", "alice", "--dir", str(data_dir), input="one\ntwo\n", password=None)
    assert result.exit_code != 0
    assert not (data_dir / "keys" / "alice.key.json").exists()


def test_new_refuses_existing_name(data_dir: Path) -> None:
    assert run("new", "alice", "--dir", str(data_dir)).exit_code == 0
    before = (data_dir / "keys" / "alice.key.json").read_bytes()
    result = run("new", "alice", "--dir", str(data_dir))
    assert_clean_failure(result, 5, "a key named 'alice' already exists")
    assert "never overwritten" in result.stderr
    assert (data_dir / "keys" / "alice.key.json").read_bytes() == before


@pytest.mark.parametrize("name", ["../evil", "a b", ".hidden", "x" * 65])
def test_new_rejects_invalid_name(data_dir: Path, name: str) -> None:
    result = run("new", name, "--dir", str(data_dir))
    assert_clean_failure(result, 2, "invalid key name")
    assert not (data_dir / "keys").exists() or not any((data_dir / "keys").iterdir())


def test_new_rejects_unknown_algorithm(data_dir: Path) -> None:
    result = run("new", "alice", "--alg", "rsa", "--dir", str(data_dir))
    assert result.exit_code == 2
    assert "rsa" in result.stderr
    assert not (data_dir / "keys").exists()


def test_new_missing_password_file(data_dir: Path, tmp_path: Path) -> None:
    result = run("new", "alice", "--dir", str(data_dir), "--password-file", str(tmp_path / "nope"))
    assert_clean_failure(result, 4, "does not exist")


def test_new_empty_password_file(data_dir: Path, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("")
    result = run("new", "alice", "--dir", str(data_dir), "--password-file", str(pw))
    assert_clean_failure(result, 2, "is empty")


def test_list_empty(data_dir: Path) -> None:
    result = run("list", "--dir", str(data_dir))
    assert result.exit_code == 0
    assert "no keys" in result.stdout
    result = run("list", "--dir", str(data_dir), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_list_table_and_json(data_dir: Path) -> None:
    run("new", "alice", "--dir", str(data_dir), "--account", "acct-1")
    run("new", "bob", "--alg", "ml-dsa-65", "--dir", str(data_dir))
    infos = Keyring(data_dir).list()
    result = run("list", "--dir", str(data_dir))
    assert result.exit_code == 0, result.output
    for info in infos:
        assert info.name in result.stdout and info.kid in result.stdout
    assert "ml-dsa-65" in result.stdout and "acct-1" in result.stdout
    result = run("list", "--dir", str(data_dir), "--json")
    assert json.loads(result.stdout) == [i.to_public_dict() for i in infos]


def test_list_reports_corrupted_file(data_dir: Path) -> None:
    run("new", "alice", "--dir", str(data_dir))
    (data_dir / "keys" / "alice.key.json").write_text("{oops")
    result = run("list", "--dir", str(data_dir))
    assert_clean_failure(result, 2, "malformed JSON")


def test_show(data_dir: Path) -> None:
    run("new", "alice", "--dir", str(data_dir), "--account", "acct-1")
    info = Keyring(data_dir).get_info("alice")
    result = run("show", "alice", "--dir", str(data_dir))
    assert result.exit_code == 0, result.output
    for text in ("alice", "ed25519", info.kid, "acct-1", "alice.key.json"):
        assert text in result.stdout
    result = run("show", "alice", "--dir", str(data_dir), "--json")
    doc = json.loads(result.stdout)
    assert doc["kid"] == info.kid and doc["account"] == "acct-1"
    assert doc["file"].endswith("alice.key.json")


def test_show_missing_key(data_dir: Path) -> None:
    result = run("show", "ghost", "--dir", str(data_dir))
    assert_clean_failure(result, 4, "no key named 'ghost'")


def test_show_tampered_kid(data_dir: Path) -> None:
    run("new", "alice", "--dir", str(data_dir))
    path = data_dir / "keys" / "alice.key.json"
    doc = json.loads(path.read_bytes())
    doc["kid"] = "0" * 32
    path.write_bytes(canonical_bytes(doc))
    result = run("show", "alice", "--dir", str(data_dir))
    assert_clean_failure(result, 2, "is not the id of its public key")


def test_export_public_stdout(data_dir: Path) -> None:
    run("new", "alice", "--dir", str(data_dir), "--account", "acct-1")
    result = run("export-public", "alice", "--dir", str(data_dir))
    assert result.exit_code == 0, result.output
    record = Keyring(data_dir).export_public("alice")
    assert json.loads(result.stdout) == record
    assert result.stdout.strip().encode() == canonical_bytes(record)
    assert set(record) == {"alg", "kid", "pub", "name", "account"}


def test_export_public_out_file(data_dir: Path, tmp_path: Path) -> None:
    run("new", "alice", "--dir", str(data_dir))
    out = tmp_path / "alice.pub.json"
    result = run("export-public", "alice", "--dir", str(data_dir), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == Keyring(data_dir).export_public("alice")
    result = run("export-public", "alice", "--dir", str(data_dir), "--out", str(out))
    assert_clean_failure(result, 5, "already exists")
    result = run("export-public", "alice", "--dir", str(data_dir), "--out", str(out), "--force")
    assert result.exit_code == 0


def test_export_public_missing_key(data_dir: Path) -> None:
    result = run("export-public", "ghost", "--dir", str(data_dir))
    assert_clean_failure(result, 4, "no key named 'ghost'")


def test_dir_defaults_to_env(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARECHAIN_DIR", str(data_dir))
    assert default_dir() == data_dir
    assert run("new", "alice").exit_code == 0
    assert (data_dir / "keys" / "alice.key.json").exists()
    assert "alice" in run("list").stdout


def test_dir_defaults_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_dir() == Path("carechain-data")
    assert run("new", "alice").exit_code == 0
    assert (tmp_path / "carechain-data" / "keys" / "alice.key.json").exists()


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(app, ["keys", "--help"])
    assert result.exit_code == 0
    for command in ("new", "list", "show", "export-public"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ValidationError("x"), 2),
        (AuthenticationError("x"), 3),
        (NotFoundError("x"), 4),
        (ConflictError("x"), 5),
        (VerificationError("x"), 6),
        (InfrastructureError("x"), 1),
        (LedgerError("x"), 1),
    ],
)
def test_exit_codes(error: LedgerError, code: int) -> None:
    assert exit_code_for(error) == code

"""Key files, P2PHPO_KEY and `p2phpo keygen`."""

from __future__ import annotations

import base64
import stat

import pytest
from typer.testing import CliRunner

from p2phpo.cli import app
from p2phpo.core.wire import key_id
from p2phpo.keys import (
    KeyFileError,
    generate_key,
    load_key,
    load_keyring,
    load_keys,
    write_key_file,
)

K1 = bytes(range(32))
K2 = bytes(range(1, 33))


def test_generate_key_is_32_fresh_bytes():
    a, b = generate_key(), generate_key()
    assert len(a) == 32 and a != b


def test_write_then_load_round_trip(tmp_path):
    path = tmp_path / "cluster.key"
    key = write_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(str(path), env={}) == key
    with pytest.raises(KeyFileError, match="already exists"):
        write_key_file(path)
    assert write_key_file(path, K1, force=True) == K1
    assert load_key(path, env={}) == K1


def test_env_variable_hex_or_base64_and_file_wins(tmp_path):
    assert load_key(None, env={"P2PHPO_KEY": K1.hex()}) == K1
    assert load_key(None, env={"P2PHPO_KEY": base64.b64encode(K1).decode()}) == K1
    assert load_key(None, env={"P2PHPO_KEY": base64.urlsafe_b64encode(K1).decode()}) == K1
    assert load_key(None, env={}) is None
    path = tmp_path / "k"
    write_key_file(path, K2)
    assert load_key(path, env={"P2PHPO_KEY": K1.hex()}) == K2


def test_several_lines_make_a_keyring_first_is_primary(tmp_path):
    path = tmp_path / "ring"
    path.write_text(f"# rotation in progress\n{K2.hex()}\n\n{K1.hex()}\n")
    path.chmod(0o600)
    assert load_keys(path, env={}) == [K2, K1]
    ring = load_keyring(path, env={})
    assert ring is not None and ring.primary == K2 and key_id(K1) in ring
    assert load_keyring(None, env={}) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("abcdef\n", "holds 3 bytes"),
        ("!!" * 32 + "\n", "neither hex nor base64"),
        ("\n# nothing\n", "holds no key"),
        (K1.hex() + "00\n", "holds 33 bytes"),
        ("zz" * 32 + "\n", "holds 48 bytes"),
    ],
)
def test_bad_key_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "bad"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=message) as ei:
        load_key(path, env={})
    assert "\n" not in str(ei.value) and str(ei.value).endswith(".")


def test_missing_file_and_bad_env(tmp_path):
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key(tmp_path / "nope", env={})
    with pytest.raises(KeyFileError, match="P2PHPO_KEY"):
        load_key(None, env={"P2PHPO_KEY": "short"})


def test_readable_by_others_warns(tmp_path):
    path = tmp_path / "k"
    path.write_text(K1.hex())
    path.chmod(0o644)
    warnings: list[str] = []
    assert load_key(path, env={}, warn=warnings.append) == K1
    assert len(warnings) == 1 and "chmod 600" in warnings[0]


def test_keygen_command(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["keygen"])
    assert r.exit_code == 0 and len(bytes.fromhex(r.stdout.strip())) == 32
    out = tmp_path / "cluster.key"
    r = runner.invoke(app, ["keygen", "--out", str(out)])
    assert r.exit_code == 0 and len(load_key(out, env={}) or b"") == 32
    r = runner.invoke(app, ["keygen", "--out", str(out)])
    assert r.exit_code == 2 and "already exists" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["keygen", "--out", str(out), "--force"])
    assert r.exit_code == 0


def test_a_node_warns_when_its_key_file_is_readable_by_others(tmp_path, capsys):
    from p2phpo.commands.node_options import node_options

    path = tmp_path / "cluster.key"
    write_key_file(path, K1)
    node_options(key_file=str(path))
    assert "readable by other users" not in capsys.readouterr().err
    path.chmod(0o644)
    opts = node_options(key_file=str(path))
    err = capsys.readouterr().err
    assert opts.keyring is not None  # still runs: a warning, not a refusal
    assert f"warning: key file {path} is readable by other users; run `chmod 600 {path}`" in err

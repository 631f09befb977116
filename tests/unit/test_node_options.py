"""``p2phpo node`` options: checked, and what they name loaded, before a node is built."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from p2phpo.cli import app
from p2phpo.commands.node_options import load_key, node_options
from p2phpo.runtime.node import DEFAULT_STUDY, NodeError


@pytest.mark.parametrize("kwargs, sentence", [
    ({"log_level": "loud"}, "unknown --log-level 'loud'"),
    ({"grace": -1.0}, "--grace must be a number of seconds >= 0"),
    ({"grace": float("nan")}, "--grace must be a number of seconds >= 0"),
    ({"profile": "moon"}, "unknown profile 'moon'; use one of lan, local, wan"),
    ({"batch": 0}, "--batch must be a number of trials from 1 to 64, not 0"),
    ({"batch": 65}, "--batch must be a number of trials from 1 to 64, not 65"),
    ({"seeds": ["localhost:0"]}, "'localhost:0': port 0 is no peer's port"),
    ({"seeds": ["10.0.0.2:7946", "host:99999"]}, "cannot read 'host:99999' as host:port"),
    ({"advertise": "10.0.0.2:0"}, "'10.0.0.2:0': port 0 is no peer's port"),
    ({"bind": "127.0.0.1:x"}, "cannot read '127.0.0.1:x' as host:port"),
])
def test_a_bad_option_is_one_sentence(kwargs: dict, sentence: str) -> None:
    with pytest.raises(NodeError, match=sentence.replace("(", r"\(").replace("+", r"\+")):
        node_options(**kwargs)


@pytest.mark.parametrize("value", ["junk", "0", "-2", "1.5", "٣"])
def test_a_bad_worker_lanes_variable_is_one_sentence(monkeypatch, value: str) -> None:
    monkeypatch.setenv("P2PHPO_WORKER_LANES", value)
    with pytest.raises(NodeError, match="P2PHPO_WORKER_LANES=.* must be a whole number of workers >= 1"):
        node_options()
    monkeypatch.setenv("P2PHPO_WORKER_LANES", " 2 ")
    node_options()  # a good one passes


def test_a_missing_key_file_or_study_file_is_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("P2PHPO_KEY", raising=False)
    with pytest.raises(NodeError) as err:
        node_options(key_file=str(tmp_path / "nope.key"))
    assert "nope.key" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(NodeError) as err:
        node_options(study=tmp_path / "missing.toml")
    assert "missing.toml" in str(err.value)


def test_good_options_carry_the_loaded_study_and_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("P2PHPO_KEY", raising=False)
    key = tmp_path / "k.key"
    key.write_text(bytes(range(32)).hex() + "\n")
    key.chmod(0o600)
    opts = node_options(study=DEFAULT_STUDY, key_file=str(key), log_level="DEBUG")
    assert opts.spec is not None and opts.spec.name
    assert opts.keyring is not None and opts.log_level == "debug"
    assert load_key(None) is None  # no key file, no P2PHPO_KEY: the null cipher


@pytest.mark.parametrize("args, sentence", [
    (["--profile", "moon"], "unknown profile 'moon'"),
    (["--seed", "localhost:0"], "port 0 is no peer's port"),
])
def test_the_cli_says_it_and_exits_2_before_anything_starts(tmp_path: Path, args: list[str],
                                                            sentence: str) -> None:
    result = CliRunner().invoke(app, ["node", *args, "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert sentence in result.output
    assert not (tmp_path / "s").exists()  # no state dir was created


def test_a_bad_metrics_address_is_said_before_the_node_starts() -> None:
    with pytest.raises(NodeError, match="--metrics"):
        node_options(metrics="not-a-port")

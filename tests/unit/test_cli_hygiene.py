"""What a user sees of the command line: errors, help text, bind failures."""

from __future__ import annotations

import errno
import socket

import pytest
from typer.testing import CliRunner

from p2phpo.cli import app
from p2phpo.commands.simulate import SCENARIO_HELP
from p2phpo.ui.errors import bind_error, fail


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_user_text_is_never_read_as_markup(capsys):
    fail("[study] n_trials must be an integer >= 1, got 0")
    fail("cannot read /data/[/x]/study.toml")  # a MarkupError before
    err = capsys.readouterr().err
    assert "error: [study] n_trials must be an integer >= 1, got 0" in err
    assert "error: cannot read /data/[/x]/study.toml" in err


def test_an_error_path_with_brackets_exits_2_with_one_sentence(tmp_path):
    missing = tmp_path / "a[/x]b[study]"
    res = invoke("export", "--state-dir", str(missing))
    assert res.exit_code == 2
    assert str(missing) in res.stderr and "Traceback" not in res.stderr


def test_errors_are_not_hard_wrapped_off_a_terminal(tmp_path):
    deep = tmp_path / ("very-long-folder-name-" * 6) / "state"
    res = invoke("export", "--state-dir", str(deep))
    assert res.exit_code == 2
    line = next(x for x in res.stderr.splitlines() if x.startswith("error:"))
    assert str(deep) in line and len(line) > 120


@pytest.mark.parametrize("command", ["node", "status", "export", "train", "simulate", "keygen"])
def test_help_shows_what_to_type_not_python_types(command):
    res = invoke(command, "--help")
    assert res.exit_code == 0
    assert "<bool>" not in res.stdout and "list[" not in res.stdout and "<str>" not in \
        res.stdout.split("Options")[-1]
    if command in ("node", "status", "export"):
        assert "HOST:PORT" in res.stdout


def test_simulate_help_lists_every_scenario():
    from simulations.scenarios import SCENARIOS

    assert SCENARIO_HELP == {name: s.about for name, s in SCENARIOS.items()}
    res = invoke("simulate", "--help")
    for name in SCENARIOS:
        assert name in res.stdout


def test_a_port_in_use_is_named():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as t:
            with pytest.raises(OSError) as e:
                t.bind(("127.0.0.1", port))
    assert e.value.errno == errno.EADDRINUSE
    message = bind_error(f"127.0.0.1:{port}", e.value)
    assert message.startswith(f"port {port} is already in use")


def test_a_study_file_error_keeps_its_brackets(tmp_path):
    study = tmp_path / "a[x]b[study].toml"
    study.write_text('[study]\nn_trials = 0\n[space]\nx = {type = "float", low = 0, high = 1}\n')
    res = invoke("node", "--study", str(study), "--state-dir", str(tmp_path / "state"))
    assert res.exit_code == 2
    assert f"error: {study}: [study] n_trials must be an integer >= 1, got 0" in res.stderr


def test_a_bare_bind_error_from_uvloop_is_still_named_a_port_in_use():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        message = bind_error(f"127.0.0.1:{port}",
                             OSError(f"could not bind to local_addr ('127.0.0.1', {port})"))
    assert message == (f"port {port} is already in use on 127.0.0.1 (another p2phpo node?); "
                       "pick a free one with --bind HOST:PORT")


def test_a_node_whose_only_seed_is_itself_says_so_instead_of_waiting(tmp_path):
    from p2phpo.runtime.node import Node, NodeError, NodeOptions

    node = Node(NodeOptions(seeds=["localhost:23987"], bind="127.0.0.1:23987",
                            state_dir=tmp_path / "s"))
    with pytest.raises(NodeError) as e:
        node.setup()  # before this, the node waited for a study in silence, forever
    node.storage.close()
    assert "--seed localhost:23987 is this node's own address" in str(e.value)
    other = Node(NodeOptions(seeds=["localhost:23988"], bind="127.0.0.1:23987",
                             state_dir=tmp_path / "t"))
    other.setup()  # a real seed elsewhere: no complaint
    other.storage.close()


def test_a_seed_is_self_only_for_the_same_ip_and_port():
    from p2phpo.runtime.resolve import names_self

    assert names_self(("localhost", 7946), ("127.0.0.1", 7946))
    assert names_self(("127.0.0.1", 7946), ("127.0.0.1", 7946))
    assert not names_self(("127.0.0.1", 7947), ("127.0.0.1", 7946))
    assert not names_self(("127.0.0.2", 7946), ("127.0.0.1", 7946))
    assert not names_self(("node1", 7946), ("127.0.0.1", 7946))  # names are not looked up

"""The worker subprocess and its asyncio client, driven through real pipes."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sys
from pathlib import Path

import pytest

from p2phpo.train.worker import (
    ProtocolError,
    SetupError,
    TrialStatus,
    WorkerClient,
    cap_error,
    decode_body,
    encode_frame,
    run_inprocess,
)
from p2phpo.trial import Verdict

ROOT = Path(__file__).resolve().parents[2]
CUSTOM = "examples.custom_objective:objective"


def _client(tmp_path: Path, objective: str = CUSTOM, options: dict | None = None,
            **kw) -> WorkerClient:
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    return WorkerClient(objective, options or {"max_epochs": 20}, stderr_path=tmp_path / "worker.log",
                        cache_dir=tmp_path / "jax-cache", env=env, **kw)


def test_custom_objective_is_pruned_through_the_pipe(tmp_path: Path) -> None:
    seen: list[tuple[int, float]] = []

    def on_report(step: int, value: float) -> Verdict:
        seen.append((step, value))
        return Verdict.PRUNE if step == 3 else Verdict.CONTINUE

    async def main():
        client = _client(tmp_path)
        await client.start()
        try:
            return await client.run("ab:1", 0, {"x": 1.0, "y": 2.0}, on_report)
        finally:
            await client.close()

    out = asyncio.run(main())
    assert [s for s, _ in seen] == [1, 2, 3]
    assert out.status is TrialStatus.PRUNED and out.verdict is Verdict.PRUNE
    assert out.last_step == 3 and out.value == pytest.approx(seen[-1][1])


def test_objective_raising_is_failed_with_its_error_text(tmp_path: Path) -> None:
    async def main():
        client = _client(tmp_path, options={"max_epochs": 5, "fail_at_epoch": 2})
        await client.start()
        try:
            failed = await client.run("ab:1", 0, {"x": 0.0}, lambda s, v: Verdict.CONTINUE)
            return failed, client.pid
        finally:
            await client.close()

    out, _ = asyncio.run(main())
    assert out.status is TrialStatus.FAILED
    assert out.error == "RuntimeError: injected failure at epoch 2"
    assert out.last_step == 1


def test_worker_killed_mid_trial_is_failed_and_restarted(tmp_path: Path) -> None:
    async def main():
        client = _client(tmp_path, options={"max_epochs": 3})
        await client.start()
        first_pid = client.pid

        def kill_on_report(step: int, value: float) -> Verdict:
            os.kill(client.pid, signal.SIGKILL)
            return Verdict.CONTINUE

        try:
            died = await client.run("ab:1", 0, {"x": 1.0}, kill_on_report)
            again = await client.run("ab:2", 1, {"x": 2.0}, lambda s, v: Verdict.CONTINUE)
            return died, again, first_pid, client.pid, client.restarts
        finally:
            await client.close()

    died, again, pid1, pid2, restarts = asyncio.run(main())
    assert died.status is TrialStatus.FAILED
    assert died.error == "worker died: killed by SIGKILL"
    assert again.status is TrialStatus.COMPLETE and again.last_step == 3
    assert pid1 != pid2 and restarts == 1


def test_prints_in_objective_do_not_corrupt_the_pipe_and_stop_current_stops(tmp_path: Path) -> None:
    (tmp_path / "noisy_obj.py").write_text(
        "import sys, os\n"
        "def objective(trial):\n"
        "    for step in range(1, 50):\n"
        "        print('epoch', step, 'x' * 5000)\n"
        "        os.write(1, b'raw bytes on fd 1\\n')\n"
        "        trial.report(step * 0.5, step)\n"
        "    return 1.0\n")

    async def main():
        client = _client(tmp_path, objective="noisy_obj:objective")
        await client.start()

        async def on_report(step: int, value: float) -> Verdict:
            if step == 2:
                await client.stop_current()
            return Verdict.CONTINUE

        try:
            return await client.run("ab:1", 0, {}, on_report)
        finally:
            await client.close()

    out = asyncio.run(main())
    assert out.status is TrialStatus.PRUNED and out.verdict is Verdict.STOP
    assert out.last_step == 2 and out.value == 1.0  # the stop overtakes the continue
    assert b"raw bytes on fd 1" in (tmp_path / "worker.log").read_bytes()


def test_setup_errors_carry_the_reason(tmp_path: Path) -> None:
    async def start(objective: str, options: dict) -> str:
        client = _client(tmp_path, objective=objective, options=options)
        try:
            with pytest.raises(SetupError) as info:
                await client.start()
            return str(info.value)
        finally:
            await client.close()

    assert "no_such_module" in asyncio.run(start("no_such_module:fn", {}))
    missing = tmp_path / "nowhere"
    text = asyncio.run(start("mnist-mlp", {"dataset": str(missing)}))
    assert "nowhere" in text and "neither a known name" in text


def test_trial_timeout_kills_a_hung_trial(tmp_path: Path) -> None:
    (tmp_path / "hung_obj.py").write_text(
        "import time\ndef objective(trial):\n    time.sleep(60)\n    return 0.0\n")

    async def main():
        client = _client(tmp_path, objective="hung_obj:objective")
        await client.start()
        try:
            return await client.run("ab:1", 0, {}, lambda s, v: Verdict.CONTINUE, timeout=0.5)
        finally:
            await client.close()

    out = asyncio.run(main())
    assert out.status is TrialStatus.FAILED and "timed out" in out.error


def test_inprocess_runner_classifies_outcomes() -> None:
    ok = run_inprocess(CUSTOM, {"x": math.pi, "y": 2.275}, options={"max_epochs": 4, "noise": 0})
    assert ok.status is TrialStatus.COMPLETE and ok.value == pytest.approx(0.397887 * 1.125, rel=1e-4)
    pruned = run_inprocess(CUSTOM, {}, options={"max_epochs": 9},
                           on_report=lambda s, v: Verdict.STOP if s == 2 else Verdict.CONTINUE)
    assert pruned.status is TrialStatus.PRUNED and pruned.verdict is Verdict.STOP and pruned.last_step == 2
    nan = run_inprocess(lambda trial: float("nan"), {})
    assert nan.status is TrialStatus.FAILED and "nan" in nan.error
    long = run_inprocess(lambda trial: 1 / 0 if trial else 0, {})
    assert long.error == "ZeroDivisionError: division by zero"


def test_frames_roundtrip_and_reject_bad_input() -> None:
    msg = {"type": "report", "trial_id": "ab:1", "step": 3, "value": 0.5}
    frame = encode_frame(msg)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert decode_body(frame[4:]) == msg
    with pytest.raises(ProtocolError):
        decode_body(b"\x93\x01\x02\x03")  # a list, not a map
    with pytest.raises(ProtocolError):
        decode_body(b"\xc1")
    with pytest.raises(ProtocolError):
        encode_frame({"type": "x", "blob": b"\0" * (2 << 20)})
    assert len(cap_error("é" * 300).encode()) <= 256


def test_builtin_mnist_mlp_runs_in_the_worker_with_a_persistent_compile_cache(tmp_path: Path) -> None:
    options = {"dataset": "mnist", "max_epochs": 3}
    env_extra = {"P2PHPO_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}

    async def main():
        client = _client(tmp_path, objective="mnist-mlp", options=options)
        client.extra_env.update(env_extra)
        info = await client.start()
        try:
            out = await client.run("ab:1", 0, {"layers": 1, "width": 32, "batch_size": 128},
                                   lambda s, v: Verdict.PRUNE if s == 2 else Verdict.CONTINUE)
            return info, out
        finally:
            await client.close()

    info, out = asyncio.run(main())
    assert info["dataset"]["name"] == "mnist" and info["dataset"]["train"] == 4000
    assert len(info["dataset"]["fingerprint"]) == 64
    assert out.status is TrialStatus.PRUNED and out.last_step == 2 and 0.5 < out.value < 1.0
    assert any((tmp_path / "jax-cache").iterdir())


def test_late_prune_verdict_is_honoured_at_the_next_report(tmp_path: Path) -> None:
    async def on_report(step: int, value: float) -> Verdict:
        if step == 1:
            await asyncio.sleep(0.4)  # the worker stops waiting after 0.1 s and goes on
            return Verdict.PRUNE
        return Verdict.CONTINUE

    async def main():
        client = _client(tmp_path, verdict_timeout=0.1)
        await client.start()
        nice = os.getpriority(os.PRIO_PROCESS, client.pid) - os.getpriority(os.PRIO_PROCESS, 0)
        try:
            return await client.run("ab:1", 0, {}, on_report), nice
        finally:
            await client.close()

    out, nice = asyncio.run(main())
    assert out.status is TrialStatus.PRUNED and out.verdict is Verdict.PRUNE
    assert 2 <= out.last_step < 20
    assert nice == min(10, 19 - os.getpriority(os.PRIO_PROCESS, 0))  # 19 is the lowest priority


def test_worker_env_caps_threads_and_sets_the_compile_cache(tmp_path: Path) -> None:
    from p2phpo.train.worker import worker_env

    one = worker_env(1, tmp_path, base={"XLA_FLAGS": "--xla_dump_to=/tmp/x"})
    assert "--xla_cpu_multi_thread_eigen=false" in one["XLA_FLAGS"]
    assert one["XLA_FLAGS"].startswith("--xla_dump_to=/tmp/x")
    assert one["OMP_NUM_THREADS"] == "1" and one["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path)
    cpus = len(os.sched_getaffinity(0))
    if cpus > 2:
        two = worker_env(2, None, base={})
        assert len(two["P2PHPO_WORKER_CPUS"].split(",")) == 2


BATCH_OBJ = '''
from p2phpo.trial import TrialOutcome, TrialPruned, TrialStatus

def plain(trial):
    for s in (1, 2, 3):
        trial.report(float(trial.params["x"]) * s, s)
        if trial.should_prune():
            raise TrialPruned()
    return float(trial.params["x"])

def together(trial):
    return plain(trial)

def _batch(trials):  # epoch by epoch, every live member reports, as a packed batch does
    live, out = list(trials), {}
    for s in (1, 2, 3):
        for t in list(live):
            try:
                t.report(float(t.params["x"]) * s, s)
            except TrialPruned:  # the node stopped this member
                pass
            if t.should_prune():
                live.remove(t)
                out[t.trial_id] = TrialOutcome(TrialStatus.PRUNED, t.reports.get(s), None, 0.0, s,
                                               t.verdict)
    for t in live:
        out[t.trial_id] = TrialOutcome(TrialStatus.COMPLETE, float(t.params["x"]), None, 0.0, 3)
    return [out[t.trial_id] for t in trials]

together.batch = _batch
'''


THREE = [("ab:1", 0, {"x": 1.0}), ("ab:2", 1, {"x": 2.0}), ("ab:3", 2, {"x": 3.0})]  # a batch


@pytest.mark.parametrize("objective", ["batch_obj:together", "batch_obj:plain"])
def test_a_batch_of_trials_reports_and_ends_each_member_on_its_own(tmp_path: Path, objective) -> None:
    (tmp_path / "batch_obj.py").write_text(BATCH_OBJ)
    seen: list[tuple[str, int]] = []

    def on_report(tid: str, step: int, value: float) -> Verdict:
        seen.append((tid, step))
        return Verdict.PRUNE if (tid, step) == ("ab:2", 2) else Verdict.CONTINUE

    async def main():
        client = _client(tmp_path, objective=objective)
        await client.start()
        try:
            return await client.run_batch(THREE, on_report)
        finally:
            await client.close()

    out = asyncio.run(main())
    assert out["ab:1"].status is TrialStatus.COMPLETE and out["ab:1"].value == 1.0
    assert out["ab:2"].status is TrialStatus.PRUNED and out["ab:2"].last_step == 2
    assert out["ab:2"].value == 4.0 and out["ab:2"].verdict is Verdict.PRUNE
    assert out["ab:3"].status is TrialStatus.COMPLETE and out["ab:3"].value == 3.0
    if objective.endswith("together"):  # the hook trains them at once: reports interleave
        assert seen[:3] == [("ab:1", 1), ("ab:2", 1), ("ab:3", 1)] and len(seen) == 8
    else:  # no hook: one after another
        assert seen[:3] == [("ab:1", 1), ("ab:1", 2), ("ab:1", 3)] and len(seen) == 8


@pytest.mark.parametrize("objective", ["batch_obj:together", "batch_obj:plain"])
def test_stopping_one_member_of_a_batch_lets_the_others_finish(tmp_path: Path, objective) -> None:
    (tmp_path / "batch_obj.py").write_text(BATCH_OBJ)
    seen: list[tuple[str, int]] = []

    async def main():
        client = _client(tmp_path, objective=objective)

        async def on_report(tid: str, step: int, value: float) -> Verdict:
            seen.append((tid, step))
            if (tid, step) == ("ab:1", 1):  # the node stops ab:2 (say, it lost its slot)
                await client.stop_trial("ab:2")
            return Verdict.CONTINUE

        await client.start()
        try:
            return await client.run_batch(THREE, on_report)
        finally:
            await client.close()

    out = asyncio.run(main())
    assert out["ab:2"].status is TrialStatus.PRUNED and out["ab:2"].verdict is Verdict.STOP
    assert not [s for t, s in seen if t == "ab:2"]  # it stopped at its first report
    for tid, value in (("ab:1", 1.0), ("ab:3", 3.0)):
        assert out[tid].status is TrialStatus.COMPLETE and out[tid].value == value
        assert [s for t, s in seen if t == tid] == [1, 2, 3]


def test_a_worker_spawned_before_the_node_imports_is_adopted(tmp_path: Path, monkeypatch) -> None:
    from p2phpo.train import early

    (tmp_path / "loud_obj.py").write_text(
        "import os\n"
        "def objective(trial):\n"
        "    os.write(1, b'hello from the early worker\\n')\n"
        "    trial.report(0.5, 1)\n"
        "    return 0.75\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(tmp_path)]))
    assert early.wanted(["p2phpo", "node", "--study", "s.toml"], {})
    assert not early.wanted(["p2phpo", "node", "--observer"], {})
    assert not early.wanted(["p2phpo", "status"], {})
    assert not early.wanted(["p2phpo", "node"], {"P2PHPO_EARLY_WORKER": "0"})
    assert early.spawn(["p2phpo", "status"]) is None

    async def main(proc, **kw):
        client = WorkerClient("loud_obj:objective", {}, stderr_path=tmp_path / "worker.log",
                              cache_dir=tmp_path / "jax-cache", **kw)
        await client.start()
        try:
            pid = client.pid
            return pid, await client.run("ab:1", 0, {}, lambda step, value: Verdict.CONTINUE)
        finally:
            await client.close()
            assert proc.poll() is not None  # nothing left behind

    # Spawned as the node would spawn it: the node's client takes it (same process), its
    # output goes to the node's log (told in the init frame), the trial runs.
    proc = early.spawn(["p2phpo", "node", "--study", "s.toml"])
    assert proc is not None and early.spawn(["p2phpo", "node"]) is None  # one at a time
    pid, out = asyncio.run(main(proc))
    assert pid == proc.pid and out.status is TrialStatus.COMPLETE and out.value == 0.75
    assert b"hello from the early worker" in (tmp_path / "worker.log").read_bytes()
    # A client that would spawn it otherwise (another nice) kills it and spawns its own.
    proc = early.spawn(["p2phpo", "node"])
    assert proc is not None
    pid, out = asyncio.run(main(proc, nice=0))
    assert pid != proc.pid and out.status is TrialStatus.COMPLETE and proc.returncode is not None
    assert early.take(sys.executable, {}) is None


def test_no_early_worker_for_a_study_whose_objective_is_not_the_built_in_one(tmp_path) -> None:
    from p2phpo.train import early

    custom = tmp_path / "c.toml"
    custom.write_text('[objective]\nname = "examples.custom_objective:objective"\n')
    builtin = tmp_path / "b.toml"
    builtin.write_text('[objective]\nmax_epochs = 3\n')
    assert not early.wanted(["p2phpo", "node", "--study", str(custom)], {})
    assert not early.wanted(["p2phpo", "node", f"--study={custom}"], {})
    assert early.wanted(["p2phpo", "node", "--study", str(builtin)], {})
    assert early.wanted(["p2phpo", "node", "--seed", "h:1"], {})  # a joiner: most clusters run mnist-mlp
    (tmp_path / "bad.toml").write_text("[objective\n")
    assert early.wanted(["p2phpo", "node", "--study", str(tmp_path / "bad.toml")], {})  # the node says why

"""Worker lanes (``p2phpo/train/lanes.py``): a node with ``--batch K`` on a CPU host runs
one worker per core and trains a batch's members side by side, each on its own."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from p2phpo.train.lanes import STOPPED, WorkerLanes, lanes_for
from p2phpo.train.worker import TrialStatus, WorkerClient
from p2phpo.trial import Verdict

ROOT = Path(__file__).resolve().parents[2]

# Each trial reports x * step for steps 1..3 and returns x. A trial with "wait_for" set
# does not end before that file exists (at most 20 s: then it returns -1); a trial with
# "mark" writes that file at its first report. No timing in the assertions.
LANE_OBJ = '''
import os, time

def objective(trial):
    x = float(trial.params["x"])
    for step in (1, 2, 3):
        trial.report(x * step, step)
        if trial.should_prune():
            from p2phpo.trial import TrialPruned
            raise TrialPruned()
        if step == 1 and trial.params.get("mark"):
            open(trial.params["mark"], "w").close()
    wait = trial.params.get("wait_for")
    if wait:
        t0 = time.monotonic()
        while not os.path.exists(wait):
            if time.monotonic() - t0 > 20:
                return -1.0
            time.sleep(0.01)
    return x
'''


def _lanes(tmp_path: Path, n: int) -> WorkerLanes:
    (tmp_path / "lane_obj.py").write_text(LANE_OBJ)
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    return WorkerLanes([WorkerClient("lane_obj:objective", {}, stderr_path=tmp_path / "worker.log",
                                     env=env, threads=1) for _ in range(n)])


def test_lanes_one_per_core_at_most_one_per_member_and_capped_by_the_environment() -> None:
    assert lanes_for(1, cpus=16, env={}) == 1  # K = 1: one worker, as always
    assert lanes_for(4, cpus=2, env={}) == 2
    assert lanes_for(4, cpus=16, env={}) == 4
    assert lanes_for(8, cpus=16, env={"P2PHPO_WORKER_LANES": "1"}) == 1
    assert lanes_for(8, cpus=16, env={"P2PHPO_WORKER_LANES": "junk"}) == 8  # `node` refuses it first


def test_a_pruned_member_frees_its_lane_for_the_next_while_the_others_train(tmp_path: Path) -> None:
    started = tmp_path / "c-started"
    trials = [("t:a", 0, {"x": 1.0, "wait_for": str(started)}),  # ends only once c runs
              ("t:b", 1, {"x": 2.0}),  # pruned at its first report
              ("t:c", 2, {"x": 3.0, "mark": str(started)})]  # waits for a free lane
    seen: list[tuple[str, int]] = []
    ended: list[str] = []

    def on_report(tid: str, step: int, value: float) -> Verdict:
        seen.append((tid, step))
        return Verdict.PRUNE if tid == "t:b" else Verdict.CONTINUE

    async def main() -> tuple[dict, dict]:
        lanes = _lanes(tmp_path, 2)
        await lanes.start()
        try:
            out = await lanes.run_batch(trials, on_report, on_result=lambda t, o: ended.append(t))
            solo = _lanes(tmp_path, 1)  # the same trials, alone, one after another
            await solo.start()
            try:
                alone = {t: await solo.run(t, n, {k: v for k, v in p.items() if k != "wait_for"},
                                           lambda s, v, t=t: on_report(t, s, v))
                         for t, n, p in trials}
            finally:
                await solo.close()
            return out, alone
        finally:
            await lanes.close()

    out, alone = asyncio.run(main())
    # a finished as a normal trial: c started (on b's lane) while a still trained
    assert out["t:a"].status is TrialStatus.COMPLETE and out["t:a"].value == 1.0
    assert out["t:b"].status is TrialStatus.PRUNED and out["t:b"].last_step == 1
    assert out["t:c"].status is TrialStatus.COMPLETE and out["t:c"].value == 3.0
    assert ended.index("t:b") < ended.index("t:c")
    for tid in ("t:a", "t:c"):  # every member reported all its steps, as alone
        assert [s for t, s in seen if t == tid] == [1, 2, 3, 1, 2, 3]
    for tid, o in out.items():  # each member's outcome is the same trial's alone
        assert (o.status, o.value, o.last_step, o.verdict) == \
            (alone[tid].status, alone[tid].value, alone[tid].last_step, alone[tid].verdict)


def test_a_trial_stopped_while_it_waits_for_a_lane_ends_at_once_without_running(tmp_path: Path) -> None:
    release = tmp_path / "release"
    trials = [("t:a", 0, {"x": 1.0, "wait_for": str(release)}),
              ("t:b", 1, {"x": 2.0, "wait_for": str(release)}),
              ("t:c", 2, {"x": 3.0})]
    seen: list[str] = []

    async def main() -> tuple[dict, list[str]]:
        lanes = _lanes(tmp_path, 2)
        await lanes.start()
        ended: list[str] = []

        def on_result(tid: str, out) -> None:
            ended.append(tid)
            if tid == "t:c":  # c left while a and b still hold both lanes
                release.touch()

        async def on_report(tid: str, step: int, value: float) -> Verdict:
            seen.append(tid)
            if (tid, step) == ("t:a", 3):
                await lanes.stop_trial("t:c")
            return Verdict.CONTINUE

        try:
            return await lanes.run_batch(trials, on_report, on_result=on_result), ended
        finally:
            await lanes.close()

    out, ended = asyncio.run(main())
    assert out["t:c"] == STOPPED and out["t:c"].verdict is Verdict.STOP and "t:c" not in seen
    assert ended[0] == "t:c"
    assert out["t:a"].value == 1.0 and out["t:b"].value == 2.0  # released by c's end, not the 20 s

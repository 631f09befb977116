"""Durability cases of issue 13, measured with real nodes on 127.0.0.1.

    python benchmarks/durability.py [--cases flip_cluster,flip_lone,...] [--json]

Each case runs real ``p2phpo node`` processes with the fast JAX-free
``examples/custom_objective`` and damages a state dir the way disks do:

- ``flip_cluster``: 3 nodes, 18 trials, two linger; one flipped byte at 40%
  of the third node's ``ledger.log``; it restarts with ``--seed``.
- ``flip_lone``: one node, 12 trials; one flipped byte at 40% of its log;
  it restarts alone.
- ``torn_own``: 3 nodes; the third node's newest own record is cut in half
  (a torn write); it restarts in its cluster.
- ``readonly``: a node whose state dir is on a read-only mount (needs root).
- ``full_disk``: a lone node whose state dir is a 96 KiB tmpfs (needs root).
- ``restart_after_done``: 3 nodes, one SIGKILLed mid-study; once the other
  two have finished the study (on main before issue 13 they exit right away;
  after, they wait for it up to ``--grace``), the killed one restarts with
  ``--seed``.

Columns: the exit code of the restarted/damaged node, how many counted
results its export holds against its peers' (or the original run's), how
many trials it started after the restart, whether its stderr had a traceback,
and its first stderr line. Timings are not measured (a shared 2-core box).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import emit  # noqa: E402

from tests.e2e.cluster import COUNTED, NodeProc, export, wait_for, write_study  # noqa: E402

COLUMNS = ["case", "exit", "results kept", "trials re-run", "traceback", "message"]


def _counted(rows: list[dict]) -> int:
    return sum(r["state"] in COUNTED for r in rows)


def _started(n: NodeProc, since: int = 0) -> int:
    return sum(e.get("event") == "started" for e in n.events()[since:])


def _flip(path: Path, frac: float) -> int:
    data = bytearray(path.read_bytes())
    pos = int(len(data) * frac)
    data[pos] ^= 0x5A
    path.write_bytes(bytes(data))
    return pos


def _first_line(n: NodeProc) -> str:
    text = n.err.read_text() if n.err.exists() else ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines)[:200]


def _tb(n: NodeProc) -> bool:
    return "Traceback" in (n.err.read_text() if n.err.exists() else "")


def _cluster(root: Path, n_trials: int, made: list[NodeProc], linger_ab: bool = True,
             epochs: int = 2, sleep: float = 0.1) -> tuple[NodeProc, NodeProc, NodeProc]:
    study = write_study(root / "s.toml", n_trials=n_trials, epochs=epochs, sleep=sleep)
    extra = ["--linger"] if linger_ab else []
    a = NodeProc("a", root, ["--study", str(study), *extra]).start()
    b = NodeProc("b", root, ["--seed", a.addr, *extra]).start()
    c = NodeProc("c", root, ["--seed", a.addr]).start()
    made += [a, b, c]
    return a, b, c


def _restart_c(c: NodeProc, a: NodeProc) -> tuple[int, int]:
    before = len(c.events())
    c.args = ["--seed", a.addr]
    c.err.write_text("")
    c.start()
    try:
        code = c.wait(90)
    except subprocess.TimeoutExpired:
        c.signal(signal.SIGINT)
        code = c.wait(30)
    return code, _started(c, before)


def case_flip_cluster(root: Path, made: list[NodeProc]) -> list:
    a, b, c = _cluster(root, 18, made)
    assert c.wait(120) == 0, c.err.read_text()
    _flip(c.state / "ledger.log", 0.4)
    code, rerun = _restart_c(c, a)
    kept, want = _counted(export(c.state)), _counted(export(a.state))
    return ["flip_cluster", code, f"{kept}/{want}", rerun, _tb(c), _first_line(c)]


def case_flip_lone(root: Path, made: list[NodeProc]) -> list:
    study = write_study(root / "s.toml", n_trials=12, epochs=2, sleep=0.05)
    a = NodeProc("a", root, ["--study", str(study)]).start()
    made.append(a)
    assert a.wait(120) == 0, a.err.read_text()
    want = _counted(export(a.state))
    _flip(a.state / "ledger.log", 0.4)
    before = len(a.events())
    a.err.write_text("")
    a.start()
    code = a.wait(120)
    kept = _counted(export(a.state)) - _started(a, before)
    return ["flip_lone", code, f"{kept}/{want}", _started(a, before), _tb(a), _first_line(a)]


def case_torn_own(root: Path, made: list[NodeProc]) -> list:
    from p2phpo.storage import read_state, replay_log

    a, b, c = _cluster(root, 18, made)
    assert c.wait(120) == 0, c.err.read_text()
    log = c.state / "ledger.log"
    me = read_state(c.state).meta.node_id
    pos = 0
    last = None
    for entry, raw in replay_log(log).entries:
        if entry.origin == me:
            last = (pos, len(raw) + 8)
        pos += len(raw) + 8
    assert last is not None
    with open(log, "r+b") as f:
        f.truncate(last[0] + last[1] // 2)
    code, rerun = _restart_c(c, a)
    kept, want = _counted(export(c.state)), _counted(export(a.state))
    return ["torn_own", code, f"{kept}/{want}", rerun, _tb(c), _first_line(c)]


def _mount(target: Path, opts: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target)],
                          capture_output=True).returncode == 0


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


def case_readonly(root: Path, made: list[NodeProc]) -> list:
    study = write_study(root / "s.toml", n_trials=2, epochs=1, sleep=0.0)
    mnt = root / "ro"
    if not _mount(mnt, "size=4m"):
        return ["readonly", "-", "-", "-", "-", "skipped: cannot mount a tmpfs (not root?)"]
    try:
        a = NodeProc("a", root, ["--study", str(study)])
        a.state = mnt / "state"
        made.append(a)
        assert a.start().wait(60) == 0, a.err.read_text()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        code = a.start().wait(60)
        return ["readonly", code, "-", "-", _tb(a), _first_line(a)]
    finally:
        _umount(mnt)


def case_full_disk(root: Path, made: list[NodeProc]) -> list:
    study = write_study(root / "s.toml", n_trials=5000, epochs=1, sleep=0.0)
    mnt = root / "small"
    if not _mount(mnt, "size=96k"):
        return ["full_disk", "-", "-", "-", "-", "skipped: cannot mount a tmpfs (not root?)"]
    try:
        a = NodeProc("a", root, ["--study", str(study), "--log-level", "warning"])
        a.state = mnt / "state"
        made.append(a)
        a.start()
        try:
            code = a.wait(120)
        except subprocess.TimeoutExpired:
            a.kill()
            code = "hung"
        return ["full_disk", code, "-", "-", _tb(a), _first_line(a)]
    finally:
        _umount(mnt)


def case_restart_after_done(root: Path, made: list[NodeProc]) -> list:
    a, b, c = _cluster(root, 12, made, linger_ab=False, epochs=3, sleep=0.2)
    wait_for(lambda: _started(c) >= 1, 60, "c to start a trial")
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait(10)
    wait_for(lambda: all(any(e.get("event") == "done" for e in n.events()) for n in (a, b)),
             120, "a and b to finish the study")
    code, rerun = _restart_c(c, a)
    for n in (a, b):
        n.wait(120)
    rows_c, rows_a = export(c.state), export(a.state)
    same = "equal" if rows_c == rows_a else "differs"
    return ["restart_after_done", code, f"{_counted(rows_c)}/{_counted(rows_a)} ({same})",
            rerun, _tb(c), _first_line(c)]


CASES = {
    "flip_cluster": case_flip_cluster,
    "flip_lone": case_flip_lone,
    "torn_own": case_torn_own,
    "readonly": case_readonly,
    "full_disk": case_full_disk,
    "restart_after_done": case_restart_after_done,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    rows = []
    for name in args.cases.split(","):
        made: list[NodeProc] = []
        with tempfile.TemporaryDirectory(prefix=f"dur-{name}-") as tmp:
            try:
                rows.append(CASES[name](Path(tmp), made))
            except Exception as exc:  # a case that breaks is a row, not the end of the run
                rows.append([name, "error", "-", "-", "-", f"{type(exc).__name__}: {exc}"[:110]])
            finally:
                for n in made:
                    with contextlib.suppress(Exception):
                        n.kill()
        print(json.dumps(rows[-1]), flush=True)
    emit("durability" + (f"_{args.label}" if args.label else ""),
         f"Durability cases (issue 13) {args.label}".strip(), COLUMNS, rows)


if __name__ == "__main__":
    main()

"""Sweep overhead: the wall time of ``sweep run`` over the trials' own training time per slot.

    python bench/sweep_overhead.py [--before 04b6b97] [--pairs 2] [--max-minutes 10] [--out FILE.md]

Runs the demo's sweep (``sweep run lenet --dataset mnist --budget smoke``: 12 trials of 2 epochs on
20,000 MNIST images, offline) with the code of an earlier commit (BEFORE: a ``git worktree`` of it) and
with this working tree (AFTER), alternately (before, after, before, after, ...) so that both see the same
machine load, each into a fresh SQLite study in a temporary folder. Both use this interpreter (the same
virtual environment) with ``PYTHONPATH`` pointed at their tree.

From each run's output it reads ``this run: ... in W s (the trials' own training: T s)`` and the most
trials seen running at once (C), and prints ``ratio = W / (T / C)``: 1.00 would mean that Ray, Optuna
and the database cost nothing beyond the trials' own training. The process's whole wall time (Python
start to exit, Ray's shutdown included) is shown beside it. A benchmark, not a test: on a shared machine
compare the two columns of one run, never numbers from different runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN_LINE = re.compile(r"this run: .* in ([\d.]+) s \(the trials' own training: ([\d.]+) s\)")
RUNNING = re.compile(r"\((\d+) running, ")
COMPLETE = re.compile(r"this run: (\d+) complete")
SWEEP_ARGS = ("run", "lenet", "--dataset", "mnist", "--budget", "smoke", "--study", "overhead")


@dataclass
class Run:
    code: str  # "before" or "after"
    wall_s: float  # what `sweep run` prints: from the command's start to its last trial's line
    own_s: float  # the trials' own training, summed
    concurrency: int
    complete: int
    process_s: float  # the whole process, interpreter start to exit

    @property
    def ratio(self) -> float:
        return self.wall_s / (self.own_s / self.concurrency)


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout


def _env(tree: Path, data_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SWEEP_STORAGE", "PYTHONPATH")}
    env.update(PYTHONPATH=str(tree), SWEEP_OFFLINE="1", SWEEP_DATA_DIR=data_dir)
    return env


def _check_imports_from(tree: Path, python: str, data_dir: str) -> None:
    """The sweep package each run imports must be the tree's, not the one installed in the venv."""
    out = subprocess.run(
        [python, "-c", "import sweep; print(sweep.__file__)"],
        env=_env(tree, data_dir),
        cwd=tempfile.gettempdir(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not Path(out).resolve().is_relative_to(tree.resolve()):
        sys.exit(f"with PYTHONPATH={tree}, sweep is imported from {out}: not the tree under test")


def run_once(code: str, tree: Path, python: str, data_dir: str, work: Path, index: int) -> Run:
    folder = work / f"{code}-{index}"
    folder.mkdir()
    cmd = [
        python,
        "-m",
        "sweep",
        *SWEEP_ARGS,
        "--storage",
        f"sqlite:///{folder}/sweep.db",
        "--out",
        str(folder / "runs"),
    ]
    started = time.perf_counter()
    done = subprocess.run(cmd, env=_env(tree, data_dir), cwd=folder, capture_output=True, text=True)
    process_s = time.perf_counter() - started
    text = done.stdout + done.stderr
    found = RUN_LINE.search(text)
    if done.returncode != 0 or found is None:
        tail = "\n".join(text.splitlines()[-15:])
        sys.exit(f"{code} run {index} failed (exit {done.returncode}):\n{tail}")
    running = [int(n) for n in RUNNING.findall(text)]
    complete = COMPLETE.search(text)
    return Run(
        code=code,
        wall_s=float(found.group(1)),
        own_s=float(found.group(2)),
        concurrency=max(running) if running else (os.cpu_count() or 1),
        complete=int(complete.group(1)) if complete else 0,
        process_s=process_s,
    )


def _row(i: int, r: Run) -> str:
    return (
        f"| {i} | {r.code} | {r.complete} | {r.wall_s:.1f} | {r.own_s:.1f} | {r.concurrency} | "
        f"{r.own_s / r.concurrency:.1f} | **{r.ratio:.3f}** | {r.process_s:.1f} |"
    )


def report(runs: list[Run], before: str, after: str, load: tuple[str, str], minutes: float) -> str:
    lines = [
        "# Sweep overhead",
        "",
        f"`python bench/sweep_overhead.py` on {platform.node() or 'this machine'} ({os.cpu_count()} CPU cores), "
        f"{time.strftime('%Y-%m-%d %H:%M')}, {minutes:.1f} min; load average {load[0]} at the start, "
        f"{load[1]} at the end (the machine is shared: compare the two codes of this run only).",
        "",
        f"Each run: `sweep {' '.join(SWEEP_ARGS)}` (the demo's smoke sweep: 12 trials of 2 epochs on "
        "20,000 MNIST images), a fresh SQLite study, offline. before = "
        f"`{before}`, after = {after}; run alternately.",
        "",
        "ratio = wall / (own training / concurrency); wall is what `sweep run` prints (command start to "
        "its last trial), process is the whole process (interpreter start to exit, Ray's shutdown included).",
        "",
        "| # | code | complete | wall s | own training s | concurrency | own / concurrency s | ratio | process s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *(_row(i + 1, r) for i, r in enumerate(runs)),
        "",
    ]
    for code in ("before", "after"):
        mine = [r for r in runs if r.code == code]
        if mine:
            lines.append(
                f"- **{code}**: ratio {statistics.mean(r.ratio for r in mine):.3f} (mean of "
                f"{', '.join(f'{r.ratio:.3f}' for r in mine)}), wall {statistics.mean(r.wall_s for r in mine):.1f} s, "
                f"own training {statistics.mean(r.own_s for r in mine):.1f} s, "
                f"overhead wall - own/concurrency {statistics.mean(r.wall_s - r.own_s / r.concurrency for r in mine):.1f} s"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="04b6b97", help="the commit to compare against")
    parser.add_argument("--pairs", type=int, default=2, help="before/after pairs at most")
    parser.add_argument("--max-minutes", type=float, default=10.0, help="no new pair once it would end later")
    parser.add_argument("--data-dir", default=os.environ.get("SWEEP_DATA_DIR"), help="holds mnist/")
    parser.add_argument("--out", help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("--data-dir (or $SWEEP_DATA_DIR): the folder that holds MNIST")
    python = sys.executable
    commit = _git("rev-parse", "--short", args.before).strip()
    head = _git("rev-parse", "--short", "HEAD").strip()
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no").strip())
    after = f"this working tree (HEAD `{head}`{' plus uncommitted changes' if dirty else ''})"
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.perf_counter()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as tmp:
        work = Path(tmp)
        before_tree = work / "before-tree"
        _git("worktree", "prune")
        _git("worktree", "add", "--detach", str(before_tree), commit)
        try:
            trees = {"before": before_tree, "after": REPO}
            for tree in trees.values():
                _check_imports_from(tree, python, args.data_dir)
            for pair in range(args.pairs):
                elapsed = time.perf_counter() - started
                per_pair = elapsed / pair if pair else 0.0
                if pair and elapsed + per_pair > args.max_minutes * 60:
                    print(
                        f"stopping after {pair} pair(s): another would pass {args.max_minutes:g} min",
                        flush=True,
                    )
                    break
                for code, tree in trees.items():
                    run = run_once(code, tree, python, args.data_dir, work, pair + 1)
                    runs.append(run)
                    print(_row(len(runs), run), flush=True)
        finally:
            _git("worktree", "remove", "--force", str(before_tree))
    minutes = (time.perf_counter() - started) / 60
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = report(runs, f"{commit}", after, (load_start, load_end), minutes)
    print(text, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

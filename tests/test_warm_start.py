"""``sweep run --warm-start STUDY``: a real sweep's front is what a second study, over a changed range,
tries first (after its baseline, before its own start points); what cannot start it is one line."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import write_mnist_like

from sweep.cli import build_parser, main
from sweep.search import run_command
from sweep.select import all_rows, front
from sweep.study import is_baseline, load_study_readonly

TRAIN_IMAGES = 300
SPACE = """\
model: lenet
dataset: mnist
fixed: {{batch_size: 32, lr: 0.01, lr_policy: cosine, layers: [fc1]}}
search:
  penalty: {{choices: [none, group_lasso]}}
  lam: {{low: {low}, high: {high}, log: true}}
start:
  - {{penalty: group_lasso, lam: {start}}}
budgets:
  smoke: {{trials: 4, epochs: 1}}
"""


def run_args(*argv: str) -> dict:
    args = vars(build_parser().parse_args(["run", "lenet", *argv]))
    del args["command"]
    return args


@pytest.fixture(scope="module")
def first_study(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A real 4-trial sweep, study ``first``: its database folder and the common arguments."""
    tmp = tmp_path_factory.mktemp("warm")
    data_dir = write_mnist_like(tmp / "data", TRAIN_IMAGES)
    (tmp / "first.yaml").write_text(SPACE.format(low=0.01, high=0.5, start=0.3))
    common = ["--storage", f"sqlite:///{tmp / 'sweep.db'}", "--data-dir", str(data_dir)]
    common += ["--subset", str(TRAIN_IMAGES), "--out", str(tmp / "runs")]
    assert run_command(**run_args("--space", str(tmp / "first.yaml"), "--study", "first", *common)) == 0
    return tmp, common


def test_the_second_study_tries_the_first_ones_front_first(first_study, capsys):
    tmp, common = first_study
    url = common[1]
    earlier = load_study_readonly("first", url)
    on_front = [r.number for r in front([r for r in all_rows(earlier) if r.penalty != "none"])]
    lams = {t.number: t.params["lam"] for t in earlier.trials if "lam" in t.params}
    # the second space searches a range that holds some of the front's lambdas and not others
    inside = sorted(lams[n] for n in on_front if 0.05 <= lams[n] <= 0.5)
    (tmp / "second.yaml").write_text(SPACE.format(low=0.05, high=0.5, start=0.06))
    capsys.readouterr()
    argv = run_args(
        "--space", str(tmp / "second.yaml"), "--study", "second", "--warm-start", "first", *common
    )
    # a front trial whose lambda is outside the new range keeps only its penalty, which the others hold too
    n_warm = len(inside) or 1
    assert run_command(**{**argv, "trials": 1 + n_warm + 1}) == 0
    out = capsys.readouterr().out
    assert f"warm start: {n_warm} point(s) from the front of study first go first" in out
    trials = optuna.load_study(study_name="second", storage=url).trials
    assert is_baseline(trials[0])
    warm = trials[1 : 1 + n_warm]
    assert sorted(t.params["lam"] for t in warm) == inside or not inside  # tried as they were
    assert trials[1 + n_warm].params["lam"] == 0.06  # the space's own start point after them


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--warm-start", "nope"], ["--warm-start: no study named 'nope'", "first"]),
        (
            ["--warm-start", "first", "--dataset", "fashion_mnist"],
            ["a study of lenet on mnist", "fashion_mnist"],
        ),
        (["--warm-start", "third", "--study", "third"], ["names the study this run writes", "--resume"]),
    ],
)
def test_what_cannot_warm_start_is_one_line_and_writes_nothing(first_study, capsys, extra, words):
    tmp, common = first_study
    before = sorted(s.study_name for s in optuna.get_all_study_summaries(common[1]))
    assert (
        main(["run", "lenet", "--space", str(tmp / "first.yaml"), "--study", "other", *common, *extra]) == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in words), err
    assert sorted(s.study_name for s in optuna.get_all_study_summaries(common[1])) == before

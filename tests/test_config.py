"""Search spaces: the shipped YAML files load, sample and resolve; bad files fail with one precise line."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweep import cli, models
from sweep.config import FIELD_RANGES, TrialConfig
from sweep.errors import SweepError, quote
from sweep.space import (
    MAX_NODES,
    RANGES,
    SEARCH_KEYS,
    Budget,
    fingerprint_differences,
    fingerprint_digest,
    load_space,
    space_path,
)

SHIPPED = [
    "lenet",
    "cifar10_quick",
    "alexnet",
    "vgg13",
    "vgg13_cifar",
    "resnet20",
    "resnet56",
    "mobilenet_v2",
    "resnet18",
]

LENET_SPACE = """\
model: lenet
dataset: mnist
objectives: [top1_error, neurons]
fixed:
  batch_size: 64
  lr: 0.01
  lr_policy: inv
search:
  penalty: {choices: [none, l1, group_lasso, sparse_group_lasso, nuclear]}
  lam: {low: 1.0e-5, high: 1.0e-1, log: true}
  alpha: {low: 0.0, high: 1.0}
  layers: {choices: {fc: [fc1], all: null}}
  layer_scales:
    conv1: {low: 0.1, high: 10.0, log: true}
    fc1: {low: 0.1, high: 10.0, log: true}
  debias_fraction: {low: 0.0, high: 0.5}
  warmup_epochs: {low: 0.0, high: 2.0}
  lr: {choices: [0.01, 0.02]}
budgets:
  smoke: {trials: 6, epochs: 1, subset: 6000}
  paper:
    trials: 60
    epochs: 11
    overrides: {batch_size: 32}
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("model", SHIPPED)
def test_shipped_spaces_load_and_resolve_every_budget(model):
    space = load_space(model)
    assert space.model == model
    assert space.objectives == ("top1_error", "neurons")
    assert "smoke" in space.budgets
    for budget in space.budgets.values():
        cfg = space.trial_config(space.baseline(), budget)
        assert (cfg.penalty, cfg.lam, cfg.layers, cfg.layer_scales) == ("none", 0.0, None, {})
        # under init: baseline the baseline trains for its own epochs, from scratch, and the rest from it
        assert cfg.epochs == (budget.baseline_epochs or budget.epochs) and cfg.init is None
        assert space.trial_config({"penalty": "group_lasso"}, budget).epochs == budget.epochs
        assert cfg.dataset == space.dataset
    assert set(models.names()) <= {p.stem for p in space_path(model).parent.glob("*.yaml")}


def test_paper_schedules_are_the_caffe_solvers():
    lenet = load_space("lenet").trial_config({}, "paper")
    assert (lenet.lr, lenet.momentum, lenet.weight_decay, lenet.batch_size) == (0.01, 0.9, 5e-4, 64)
    # cosine, not Caffe's "inv", and random shifts: the two changes to Caffe's recipe (see the YAML)
    assert (lenet.lr_policy, lenet.epochs, lenet.random_shift) == ("cosine", 11, 2)
    quick = load_space("cifar10_quick").trial_config({}, "paper")
    # lr 0.01, not Caffe's 0.001: Caffe's inputs are 0-255 pixels, ours standardised (see the YAML)
    assert (quick.lr, quick.momentum, quick.weight_decay, quick.batch_size) == (0.01, 0.9, 0.004, 100)
    assert (quick.lr_policy, quick.lr_milestones, quick.lr_gamma, quick.epochs) == ("multistep", [8], 0.1, 10)
    assert quick.layers == ["conv3", "fc1"]


def test_suggest_is_conditional_on_the_penalty(tmp_path):
    space = load_space("lenet", write(tmp_path, LENET_SPACE))
    study = optuna.create_study(directions=["minimize"] * 2, sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    params = space.suggest(trial, baseline=True)
    assert set(params) == {"penalty", "lr"}, "the baseline samples nothing penalty-specific"
    assert params["penalty"] == "none" and "penalty" not in trial.params, "a constant, not a sampled choice"
    cfg = space.trial_config(params, "paper")
    assert (cfg.penalty, cfg.lam, cfg.layers, cfg.layer_scales) == ("none", 0.0, None, {})
    study.tell(trial, [1.0, 1.0])
    seen = set()
    for _ in range(60):
        trial = study.ask()
        params = space.suggest(trial)
        penalty = params["penalty"]
        seen.add(penalty)
        assert {"lam", "layers", "debias_fraction", "warmup_epochs"} <= set(params)
        assert ("alpha" in params) == (penalty == "sparse_group_lasso")
        scaled = {k.split(".", 1)[1] for k in params if k.startswith("layer_scales.")}
        assert scaled == ({"fc1"} if params["layers"] == "fc" else {"conv1", "fc1"})
        cfg = space.trial_config(params, "paper")
        assert cfg.validate() is cfg
        study.tell(trial, [1.0, 1.0])
    assert seen == {"l1", "group_lasso", "sparse_group_lasso", "nuclear"}, "none is never sampled"


def test_listing_none_among_the_penalties_is_optional(tmp_path):
    listed = load_space("lenet", write(tmp_path, LENET_SPACE))
    unlisted = load_space("lenet", write(tmp_path, LENET_SPACE.replace("[none, l1,", "[l1,"), "b.yaml"))
    for space in (listed, unlisted):
        assert space.search["penalty"].choices == ("l1", "group_lasso", "sparse_group_lasso", "nuclear")
        assert space.baseline() == {"penalty": "none", "lr": 0.01}
    assert listed.fingerprint("smoke") == unlisted.fingerprint("smoke"), "the same study either way"
    penalties = listed.fingerprint("smoke")["search"]["penalty"]["choices"]
    assert penalties == ["none", "l1", "group_lasso", "sparse_group_lasso", "nuclear"]


def test_trial_config_layers_scales_debias_and_precedence(tmp_path):
    space = load_space("lenet", write(tmp_path, LENET_SPACE))
    params = {
        "penalty": "group_lasso",
        "lam": 3e-3,
        "layers": "fc",
        "layer_scales.fc1": 2.0,
        "debias_fraction": 0.45,
        "warmup_epochs": 1.5,
    }
    cfg = space.trial_config(params, "paper", {"seed": 7, "subset": None, "data_dir": "/data"})
    assert cfg.layers == ["fc1"] and cfg.layer_scales == {"fc1": 2.0}
    assert cfg.debias_epochs == 5  # round(0.45 * 11)
    assert cfg.batch_size == 32  # the budget's override of the fixed 64
    assert (cfg.seed, cfg.subset, cfg.data_dir, cfg.epochs) == (7, None, "/data", 11)
    one_epoch = space.trial_config({**params, "debias_fraction": 0.5, "layers": "all"}, "smoke")
    assert one_epoch.debias_epochs == 0, "a 1-epoch trial keeps its only epoch sparse"
    assert one_epoch.layers is None
    with pytest.raises(SweepError, match="parameter 'bogus' is not in the search space"):
        space.trial_config({"bogus": 1})


def test_baseline_keeps_the_fixed_value_of_searched_settings(tmp_path):
    space = load_space("lenet", write(tmp_path, LENET_SPACE))
    assert space.baseline() == {"penalty": "none", "lr": 0.01}


def test_fingerprint_is_stable_and_differences_name_the_key(tmp_path):
    path = write(tmp_path, LENET_SPACE)
    a = load_space("lenet", path).fingerprint("smoke")
    b = load_space("lenet", path).fingerprint("smoke", {"data_dir": "/elsewhere", "seed": 0})
    assert a == b and fingerprint_digest(a) == fingerprint_digest(b)
    changed = load_space("lenet", write(tmp_path, LENET_SPACE.replace("high: 1.0e-1", "high: 0.5"), "b.yaml"))
    diffs = fingerprint_differences(a, changed.fingerprint("smoke"))
    assert diffs == ["search.lam.high: 0.1 -> 0.5"]
    assert fingerprint_differences(a, load_space("lenet", path).fingerprint("paper"))


BAD_SPACES = [
    ("model: lenet\nsearch: [1, 2\n", r"space\.yaml:3: malformed YAML"),
    ("model: lenet\nmodel: lenet\n", r"space\.yaml:2: malformed YAML: duplicate key 'model'"),
    (
        "model: lenet\nserch: {}\n",
        r"serch: unknown key; allowed: model, dataset, data_dir, objectives, fixed, search, start, budgets",
    ),
    ("model: lenet5\nsearch: {}\n", r"model: unknown model 'lenet5'; known: alexnet, cifar10_quick, lenet"),
    ("model: lenet\ndataset: svhn\nsearch: {}\n", r"dataset: unknown dataset 'svhn'; known: "),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, lamda: {low: 1, high: 2}}\n",
        r"search\.lamda: unknown key; allowed: penalty, lam, alpha",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l3]}}\n",
        r"search\.penalty\.choices\[1\]: unknown penalty 'l3'; allowed: none, l1, group_lasso, bn_group_lasso, sparse_group_lasso, nuclear",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none]}}\n",
        r"search\.penalty\.choices: needs a penalty besides none \(the unconstrained baseline runs once in "
        r"every study\); allowed: l1, group_lasso, bn_group_lasso, sparse_group_lasso, nuclear",
    ),
    ("model: lenet\nsearch: {lam: {low: 0.1, high: 1}}\n", r"search: missing penalty"),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, lam: {low: abc, high: 1}}\n",
        r"search\.lam\.low: must be a number, got 'abc'",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, lam: {low: 0.1, high: 0.1}}\n",
        r"search\.lam: empty or inverted range: low 0\.1 must be below high 0\.1",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, lam: {low: 0.5, high: 0.1}}\n",
        r"search\.lam: empty or inverted range",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, lam: {low: 0, high: 0.1, log: true}}\n",
        r"search\.lam\.low: a log range needs low > 0, got 0\.0",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, lam: {low: 1e-5, high: 0.1, log: yes please}}\n",
        r"search\.lam\.log: must be true or false",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, alpha: {low: 0, high: 2}}\n",
        r"search\.alpha: range 0\.0\.\.2\.0 must lie in \[0, 1\]",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, lam: {low: 1, high: 2, sigma: 3}}\n",
        r"search\.lam\.sigma: unknown key; allowed: low, high, log, step, choices",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, layer_scales: {fc9: {low: 1, high: 2}}}\n",
        r"search\.layer_scales: unknown layer 'fc9'; layers that can lose units: conv1, conv2, fc1",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, layers: {choices: [fc1]}}\n",
        r"search\.layers\.choices: must map set names to a list of layers",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}}\nobjectives: [top1_error, accuracy]\n",
        r"objectives\[1\]: unknown objective 'accuracy'; allowed: top1_error, neurons, params, flops, latency_ms",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}}\nfixed: {batch_size: 64x}\n",
        r"fixed\.batch_size: must be an integer, got '64x'",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}}\nfixed: {epochs: 3}\n",
        r"fixed\.epochs: unknown key; allowed: alpha, batch_size",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}}\nfixed: {lr_policy: step}\n",
        r"fixed: lr_policy must be one of constant, inv, multistep, cosine, got 'step'",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}}\nbudgets: {smoke: {trials: 2}}\n",
        r"budgets\.smoke: missing epochs",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}}\nbudgets: {smoke: {trials: 0, epochs: 1}}\n",
        r"budgets\.smoke\.trials: must be at least 1, got 0",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}}\n"
        "budgets: {smoke: {trials: 2, epochs: 1, search: {momentm: {low: 1e-2, high: 1e-1}}}}\n",
        r"budgets\.smoke\.search\.momentm: unknown key; allowed: penalty, lam, alpha",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, lam: {low: 1e-4, high: 1e-2}}\n"
        "budgets: {smoke: {trials: 2, epochs: 1, search: {lam: {low: 1e-1, high: 1e-2}}}}\n",
        r"budgets\.smoke\.search\.lam: empty or inverted range: low 0\.1 must be below high 0\.01",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, lam: {low: 1e-4, high: 1e-2}}\n"
        "budgets: {smoke: {trials: 2, epochs: 1, search: {penalty: {choices: [l1]}}}}\n",
        r"budgets\.smoke\.search\.penalty: a budget cannot change the penalties",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}}\nstart: {penalty: l1}\n",
        r"start: must be a list of points",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}}\nstart: [{penalty: l1, lam: 0.1}]\n",
        r"start\[0\]\.lam: not searched; searched: penalty",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, lam: {low: 1e-4, high: 1e-2}}\n"
        "start: [{penalty: l1, lam: 0.1}]\n",
        r"start\[0\]\.lam: 0\.1 must be inside its range in search\.lam",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}}\nstart: [{penalty: none}]\n",
        r"start\[0\]\.penalty: must be a penalty other than none",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, lam: {low: 1e-4, high: 1e-2}}\n"
        "start: [{lam: 0.001}]\n",
        r"start\[0\]: must name its penalty",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, lam: {low: 1e-4, high: 1e-2}}\n"
        "budgets: {long: {trials: 2, epochs: 3, search: {lam: {low: 1e-3, high: 1e-2}},\n"
        "  start: [{penalty: l1, lam: 1e-4}]}}\n",
        r"budgets\.long\.start\[0\]\.lam: 0\.0001 must be inside its range in budgets\.long\.search\.lam",
    ),
    (
        "model: lenet\nsearch: {penalty: {choices: [none, l1]}, lam: {low: 1e-4, high: 1e-2}}\n"
        "budgets: {long: {trials: 2, epochs: 3, start: [{lam: 1e-3}]}}\n",
        r"budgets\.long\.start\[0\]: must name its penalty",
    ),
    (
        "model: cifar10_quick\nsearch: {penalty: {choices: [none, l1]}}\n",
        r"model: this space is for 'cifar10_quick', not 'lenet'",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_SPACES)
def test_bad_spaces_fail_with_file_key_path_and_what_is_allowed(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SweepError, match=message) as err:
        load_space("lenet", path)
    assert str(err.value).startswith(path)
    assert "\n" not in str(err.value)


def test_unknown_budget_and_missing_file(tmp_path):
    space = load_space("lenet", write(tmp_path, LENET_SPACE))
    with pytest.raises(SweepError, match=r"unknown budget 'huge' in .*space\.yaml; known: smoke, paper"):
        space.budget("huge")
    assert space.budget(Budget("x", 1, 1)).name == "x"
    with pytest.raises(SweepError, match=r"cannot read search space .*nowhere\.yaml"):
        load_space("lenet", str(tmp_path / "nowhere.yaml"))
    with pytest.raises(SweepError, match="no search space for model 'resnet'"):
        load_space("resnet")


def test_a_budget_replaces_distributions_and_drops_start_points_outside_them(tmp_path):
    text = LENET_SPACE.replace(
        "  smoke: {trials: 6, epochs: 1, subset: 6000}",
        "  smoke:\n    trials: 6\n    epochs: 1\n    search:\n      lam: {low: 0.01, high: 0.3, log: true}\n"
        "      layer_scales: {fc1: {low: 0.5, high: 2.0}}",
    )
    text += "start:\n  - {penalty: group_lasso, lam: 0.001}\n  - {penalty: group_lasso, lam: 0.05}\n"
    space = load_space("lenet", write(tmp_path, text))
    smoke, paper = space.for_budget("smoke"), space.for_budget("paper")
    assert paper is space
    assert (smoke.search["lam"].low, smoke.search["lam"].high) == (0.01, 0.3)
    assert smoke.search["layer_scales.fc1"].high == 2.0
    assert smoke.search["layer_scales.conv1"] == space.search["layer_scales.conv1"]  # not replaced
    assert smoke.start == ({"penalty": "group_lasso", "lam": 0.05},)
    assert len(space.start) == 2
    # what a smoke sweep samples, and what makes its study: the budget's range
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        params = smoke.suggest(study.ask())
        if "lam" in params:
            assert 0.01 <= params["lam"] <= 0.3
    assert smoke.fingerprint("smoke")["search"]["lam"]["low"] == 0.01


def test_a_budget_with_its_own_start_points_tries_those_instead(tmp_path):
    text = LENET_SPACE.replace(
        "  smoke: {trials: 6, epochs: 1, subset: 6000}",
        "  smoke:\n    trials: 6\n    epochs: 1\n    search:\n      lam: {low: 0.01, high: 0.3, log: true}\n"
        "    start:\n      - {penalty: group_lasso, lam: 0.2}\n"
        "  none_first: {trials: 3, epochs: 1, start: []}",
    )
    text += "start:\n  - {penalty: group_lasso, lam: 0.001}\n  - {penalty: group_lasso, lam: 0.05}\n"
    space = load_space("lenet", write(tmp_path, text))
    assert space.for_budget("smoke").start == ({"penalty": "group_lasso", "lam": 0.2},)
    assert space.for_budget("none_first").start == ()
    assert space.for_budget("paper").start == space.start  # a budget without them keeps the space's


def test_a_budget_may_search_a_setting_the_space_fixes_and_its_baseline_keeps_the_fixed_value(tmp_path):
    """A fine-tuning budget searches a learning rate below the one the baseline is trained at."""
    text = LENET_SPACE.replace(
        "  smoke: {trials: 6, epochs: 1, subset: 6000}",
        "  smoke:\n    trials: 6\n    epochs: 1\n    search:\n      lr: {low: 1.0e-3, high: 3.0e-3, log: true}",
    )
    space = load_space("lenet", write(tmp_path, text.replace("  lr: {choices: [0.01, 0.02]}\n", "")))
    smoke = space.for_budget("smoke")
    assert "lr" in smoke.search and "lr" not in space.search
    fixed_lr = space.trial_config({}).lr
    assert not 1e-3 <= fixed_lr <= 3e-3
    assert smoke.trial_config(smoke.baseline(), "smoke").lr == fixed_lr
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        params = smoke.suggest(study.ask())
        assert 1e-3 <= smoke.trial_config(params, "smoke").lr <= 3e-3


def test_yaml_1_1_exponents_without_a_dot_are_numbers(tmp_path):
    space = load_space("lenet", write(tmp_path, LENET_SPACE.replace("low: 1.0e-5", "low: 1e-5")))
    assert space.search["lam"].low == 1e-5


def test_run_with_a_malformed_space_exits_2_with_one_line(tmp_path, capsys):
    path = write(tmp_path, "model: lenet\nsearch: {penalty: {choices: [none, l7]}}\n")
    db = tmp_path / "sweep.db"
    code = cli.main(["run", "lenet", "--space", path, "--storage", f"sqlite:///{db}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("sweep: error: ")
    assert "search.penalty.choices[1]: unknown penalty 'l7'" in err
    assert not db.exists()


def test_trial_config_round_trip_is_unchanged():
    cfg = TrialConfig(model="lenet")
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"momentum": 7.5}, "momentum must be in [0, 1], got 7.5"),
        ({"weight_decay": -3.0}, "weight_decay must be a number >= 0, got -3.0"),
        ({"batch_size": 10**23}, "batch_size must be an integer in [1, 1048576], got 1000000"),
        ({"batch_size": 64.0}, "batch_size must be an integer in [1, 1048576], got 64.0"),
        ({"lam": float("inf")}, "lam must be a number >= 0, got inf"),
        ({"warmup_epochs": float("nan")}, "warmup_epochs must be a number >= 0, got nan"),
        ({"lr": float("nan")}, "lr must be a number > 0, got nan"),
        ({"lr_power": float("-inf")}, "lr_power must be a number >= 0, got -inf"),
        ({"seed": 2**64}, "seed must be an integer in [0, 4294967295]"),
        ({"eval_test": "yes"}, "eval_test must be true or false, got 'yes'"),
        ({"device": ""}, "device must be a non-empty string, got ''"),
        ({"layers": []}, "layers must be null (every layer that can lose units) or a non-empty list"),
        ({"layer_scales": {"fc1": float("nan")}}, "layer_scales.fc1 must be a number >= 0, got nan"),
        ({"lr_milestones": [1.5]}, "lr_milestones[0] must be an integer in [0, 100000], got 1.5"),
        ({"penalty": "x" * 100_000}, "penalty must be one of none, l1,"),
        ({"distill": 1.5, "init": "w.pt"}, "distill must be in [0, 1], got 1.5"),
        ({"distill": 0.5}, "distill must be 0 without init (the teacher is the network init loads)"),
        ({"distill_temperature": 0.0}, "distill_temperature must be a number > 0, got 0.0"),
    ],
)
def test_trial_config_refuses_every_nonsense_value_by_name(settings, message):
    with pytest.raises(SweepError) as err:
        TrialConfig(model="lenet", **settings).validate()
    assert message in str(err.value)
    assert len(str(err.value)) < 250, "a value is quoted short, however long it is"


def test_random_shift_is_at_most_half_the_image():
    assert TrialConfig(model="lenet", random_shift=14).validate((28, 28)).random_shift == 14
    with pytest.raises(SweepError, match=r"random_shift must be an integer in \[0, 14\] \(pixels"):
        TrialConfig(model="lenet", random_shift=15).validate((28, 28))
    assert TrialConfig(model="lenet", random_shift=15).validate().random_shift == 15, "no image: no bound"


def test_a_searched_range_obeys_the_rules_of_a_fixed_value():
    for key, kind in SEARCH_KEYS.items():
        if kind in ("float", "int"):
            assert key in RANGES, key
            assert key == "debias_fraction" or RANGES[key] is FIELD_RANGES[key]


def test_quote_is_short_whatever_the_value():
    assert quote("abc") == "'abc'"
    assert len(quote("x" * 10**6)) <= 83
    shared = ["lol"] * 9
    for _ in range(9):
        shared = [shared] * 9  # 9^10 strings by reference, as PyYAML builds aliases
    assert len(quote(shared)) <= 83


def test_a_yaml_bomb_is_refused_quickly_with_a_short_line(tmp_path):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    text = "fixed:\n" + "".join(f"  {line}\n" for line in lines) + "model: *a8\nsearch: {}\n"
    assert len(text) < 500
    with pytest.raises(SweepError, match=f"expand it to more than {MAX_NODES} YAML nodes") as err:
        load_space("lenet", write(tmp_path, text))
    assert len(str(err.value)) < 300
    # a space just under the limit still loads
    choices = ", ".join(str(i / 1000) for i in range(1, 999))
    text = f"model: lenet\nsearch: {{penalty: {{choices: [l1]}}, lam: {{choices: [{choices}]}}}}\n"
    assert len(load_space("lenet", write(tmp_path, text, "ok.yaml")).search["lam"].choices) == 998

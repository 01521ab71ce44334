"""The command line comes from the config dataclasses (through tyro): defaults, parsing and errors have one source;
training and meta-training start from a recipe function or a YAML file."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from rtml.cli import recipes
from rtml.cli.adapt import AdaptConfig
from rtml.cli.convert import ConvertConfig
from rtml.cli.evaluate import EvaluateConfig
from rtml.cli.inspect import InspectConfig
from rtml.cli.main import COMMANDS, main
from rtml.cli.parsing import parse, parse_from_recipe
from rtml.cli.propagate import PropagateConfig
from rtml.cli.quickstart import QuickstartConfig
from rtml.cli.tune import base_training
from rtml.cli.validate_reference import ValidateConfig
from rtml.datasets.generate import GenerateConfig
from rtml.meta.config import MetaTrainConfig
from rtml.platform.hybrid.config import HybridConfig
from rtml.platform.train.config import TrainConfig, check
from rtml.platform.tune import TuneConfig

# config class, the words it needs, flat flags?, the required fields those words set
CONFIGS = [
    (GenerateConfig, ["--out", "s.zarr"], True, {"out": "s.zarr"}),
    (ConvertConfig, ["--out", "s.zarr"], False, {"out": "s.zarr"}),
    (InspectConfig, ["s.zarr"], False, {"store": "s.zarr"}),
    (ValidateConfig, [], False, {}),
    (QuickstartConfig, [], False, {}),
    (EvaluateConfig, ["s.zarr"], True, {"store": "s.zarr"}),
    (AdaptConfig, ["--model", "m.pt", "--molecule", "nh3"], True, {"model": "m.pt", "molecule": "nh3"}),
    (PropagateConfig, ["--model", "a.pt", "b.pt", "--out", "o.zarr"], True, {"model": ["a.pt", "b.pt"],
                                                                               "out": "o.zarr"}),
]


@pytest.mark.parametrize("cls,words,flat,required", CONFIGS, ids=[c[0].__name__ for c in CONFIGS])
def test_flag_defaults_are_the_dataclass_defaults(cls, words, flat, required):
    assert parse(cls, words, prog="t", flat=flat) == cls(**required)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    argv = [command, *({"train": ["small"], "meta-train": ["small"], "tune": ["debug"]}.get(command, [])), "--help"]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0 and "--help" in capsys.readouterr().out


def test_help_text_comes_from_the_field_comments(capsys):
    with pytest.raises(SystemExit):
        main(["train", "small", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--optim.lr" in out and "--model.dynamics.no-recurrent" in out and "(default: 0.001)" in out
    assert "Mamba mixers replaced by per-step MLPs" in out  # DynamicsConfig.recurrent's comment


def test_propagate_thresholds_come_from_hybrid_config():
    base = ["--model", "m.pt", "--out", "o.zarr"]
    assert parse(PropagateConfig, base, prog="t", flat=True).hybrid == HybridConfig()
    cfg = parse(PropagateConfig, [*base, "--max-model-steps", "None", "--max-spread", "0.5", "--from", "s.zarr:t1",
                                  "--no-tracking"], prog="t", flat=True)
    assert cfg.hybrid == HybridConfig(max_model_steps=None, max_spread=0.5)
    assert cfg.source == "s.zarr:t1" and cfg.tracking is False


def test_values_are_typed():
    g = parse(GenerateConfig, ["--out", "o", "--molecules", "h2", "nh3", "--steps", "7", "--dt", "1e-1",
                               "--no-rotate", "--integrator", "mmut", "--num-cpus", "None"], prog="t", flat=True)
    assert (g.molecules, g.steps, g.dt, g.sampling.rotate, g.integrator, g.num_cpus) == \
        (["h2", "nh3"], 7, 0.1, False, "mmut", None)
    a = parse(AdaptConfig, ["--model", "m", "--molecule", "x", "--support", "a.zarr", "b.h5", "--max-steps", "None",
                            "--steps", "3", "--objective", "teacher"], prog="t", flat=True)
    assert a.support == ["a.zarr", "b.h5"] and a.settings.max_steps is None and a.settings.steps == 3 \
        and a.settings.objective == "teacher"
    v = parse(ValidateConfig, ["--xc", "LDA,VWN", "B3LYP"], prog="t")
    assert v.xc == ["LDA,VWN", "B3LYP"]  # functional strings keep their commas


@pytest.mark.parametrize("argv,needle", [
    (["generate", "--out", "o", "--steps", "ten"], "--steps"),
    (["generate", "--out", "o", "--integrator", "rk4"], "rk4"),
    (["train", "debug", "--optim.lrr", "3"], "--optim.lr"),  # tyro suggests the close name
    (["train", "debug", "--deepspeed.zero-stage", "3"], "--deepspeed.zero-stage"),
    (["evaluate", "s", "--max-trajectories", "0"], "max_trajectories: expected an integer >= 1, got 0"),
    (["evaluate", "s", "--context", "0"], "context: expected an integer >= 1, got 0"),
    (["tune", "debug", "--num-samples", "0"], "num_samples: expected None or an integer >= 1, got 0"),
])
def test_bad_values_name_the_flag(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    captured = capsys.readouterr()
    assert needle in " ".join((captured.err + captured.out).split())


@pytest.mark.parametrize("argv,needle", [
    (["train", "gigantic"], "field 'RECIPE': expected a recipe"),
    (["train", "debug", "--data.horizons", "3", "--model.bundle", "2"], "data.horizons"),
    (["meta-train", "small", "--tasks.shots", "0"], "tasks.shots"),
    (["tune", "debug", "--space", "small"], "the space is the first word"),
])
def test_inconsistent_commands_are_refused_in_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_recipes_are_listed_and_printed_configs_read_back(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:  # no recipe: the list of recipes on stderr, exit status 2
        main(["train"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and all(f"  {name} " in err for name in recipes.TRAIN)
    assert main(["train", "small", "--optim.lr", "2e-4", "--data.horizons", "8", "16", "--print-config"]) == 0
    text = capsys.readouterr().out
    data = yaml.safe_load(text)
    assert data["optim"]["lr"] == 2e-4 and data["data"]["horizons"] == [8, 16] and data["recipe"] == "small"
    (tmp_path / "mine.yaml").write_text(text)
    cfg = parse_from_recipe([str(tmp_path / "mine.yaml"), "--loop.max-steps", "5"], TrainConfig, recipes.TRAIN,
                            prog="rtml train", check=check)
    assert cfg.optim.lr == 2e-4 and cfg.loop.max_steps == 5 and cfg.model == recipes.small().model
    meta = parse_from_recipe(["small", "--model.init", "m.pt"], MetaTrainConfig, recipes.META,
                             prog="rtml meta-train", check=lambda c, s: None)
    assert meta.model.init == "m.pt" and meta.tasks.shots == 5


def test_tune_trials_start_from_the_space_base_recipe_and_fixed_values():
    cfg = base_training("debug")
    assert cfg.loop.max_steps == 20 and cfg.eval.max_steps == 20 and cfg.optim == recipes.debug().optim
    t = parse(TuneConfig, ["--train.data.store", "x.zarr", "--num-samples", "3"], prog="t",
              default=TuneConfig(space="debug", train=cfg))
    assert (t.space, t.num_samples, t.name, t.out, t.train.data.store) == \
        ("debug", 3, "sweep-debug", "runs/tune/out", "x.zarr")


def _flags_without_help(help_text: str) -> list[str]:
    """The flags of a ``--help`` text whose help is only their default (tyro prints a field's comment or docstring
    entry first; ``(default: ...)``/``(required)`` alone means the field has neither). Box-drawing or ASCII output
    alike: a flag's help is on its line after a gap, else on the next line."""
    lines = [ln.strip().strip("│|").strip() for ln in help_text.splitlines()]
    missing = []
    for i, line in enumerate(lines):
        if not line.startswith("--"):
            continue
        head, *rest = re.split(r"\s{2,}", line, maxsplit=1)
        text = rest[0] if rest else (lines[i + 1] if i + 1 < len(lines) else "")
        if not text or text.startswith(("(default", "(required")):
            missing.append(head.split()[0].rstrip(","))
    return missing


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", [["generate"], ["convert"], ["inspect"], ["validate-reference"], ["quickstart"],
                                  ["evaluate"], ["adapt"], ["propagate"], ["train", "small"],
                                  ["meta-train", "small"], ["tune", "debug"]], ids=" ".join)
def test_every_flag_has_help_from_its_field(argv, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # one column of groups
    text = _help(argv, capsys)
    assert text.count("--") > 5 and _flags_without_help(text) == []


def test_the_help_guard_sees_a_field_without_help(capsys, monkeypatch):
    @dataclasses.dataclass(kw_only=True)
    class C:
        documented: int = 1  # says what it is
        bare: float = 2.0
        flag: bool = False

    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        parse(C, ["--help"], prog="t")
    assert _flags_without_help(capsys.readouterr().out) == ["--bare", "--flag"]

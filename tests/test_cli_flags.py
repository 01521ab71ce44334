"""The command line is generated from the config dataclasses: defaults, help and parsing have one source."""

from __future__ import annotations

import dataclasses

import pytest

from rtml.cli.adapt import AdaptConfig
from rtml.cli.convert import ConvertConfig
from rtml.cli.evaluate import EvaluateConfig
from rtml.cli.flags import build, describe, field_help, field_table
from rtml.cli.main import build_parser
from rtml.cli.propagate import PropagateConfig
from rtml.cli.quickstart import QuickstartConfig
from rtml.cli.validate_reference import ValidateConfig
from rtml.datasets.generate import GenerateConfig
from rtml.meta.config import MetaTrainConfig
from rtml.platform.configio import flatten, to_dict
from rtml.platform.hybrid.config import HybridConfig
from rtml.platform.train.config import TrainConfig
from rtml.platform.tune import TuneConfig

# command, the words it needs, its config class, the required fields those words set
COMMANDS = [
    ("generate", ["--out", "s.zarr"], GenerateConfig, {"out": "s.zarr"}),
    ("convert", ["--out", "s.zarr"], ConvertConfig, {"out": "s.zarr"}),
    ("validate-reference", [], ValidateConfig, {}),
    ("quickstart", [], QuickstartConfig, {}),
    ("tune", [], TuneConfig, {}),
    ("evaluate", ["m.pt", "s.zarr"], EvaluateConfig, {"model": "m.pt", "store": "s.zarr"}),
    ("adapt", ["--model", "m.pt", "--molecule", "nh3"], AdaptConfig, {"model": "m.pt", "molecule": "nh3"}),
    ("propagate", ["--model", "a.pt", "b.pt", "--out", "o.zarr"], PropagateConfig,
     {"model": ["a.pt", "b.pt"], "out": "o.zarr"}),
]


@pytest.mark.parametrize("command,words,cls,required", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_flag_defaults_are_the_dataclass_defaults(command, words, cls, required):
    args = build_parser().parse_args([command, *words])
    assert build(cls, args) == cls(**required)


@pytest.mark.parametrize("command,words,cls,required", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_flag_has_help_from_its_field(command, words, cls, required):
    missing = [i.path for i in describe(cls) if not i.help]
    assert not missing, f"{cls.__name__}: fields without a '# comment' or docstring entry: {missing}"


def test_propagate_thresholds_come_from_hybrid_config():
    args = build_parser().parse_args(["propagate", "--model", "m.pt", "--out", "o.zarr"])
    assert build(PropagateConfig, args).hybrid == HybridConfig()
    args = build_parser().parse_args(["propagate", "--model", "m.pt", "--out", "o.zarr", "--max-model-steps", "none",
                                      "--max-spread", "0.5", "--from", "s.zarr:t1", "--no-tracking"])
    cfg = build(PropagateConfig, args)
    assert cfg.hybrid == HybridConfig(max_model_steps=None, max_spread=0.5)
    assert cfg.source == "s.zarr:t1" and cfg.tracking is False
    assert not [i.path for i in describe(HybridConfig) if not i.help]


def test_values_parse_like_the_yaml_configs():
    p = build_parser()
    g = build(GenerateConfig, p.parse_args(["generate", "--out", "o", "--molecules", "h2,nh3", "--steps", "7",
                                            "--dt", "1e-1", "--no-rotate", "--integrator", "mmut",
                                            "--num-cpus", "none"]))
    assert (g.molecules, g.steps, g.dt, g.sampling.rotate, g.integrator, g.num_cpus) == \
        (["h2", "nh3"], 7, 0.1, False, "mmut", None)
    a = build(AdaptConfig, p.parse_args(["adapt", "--model", "m", "--molecule", "x", "--support", "a.zarr", "b.h5",
                                         "--rollout-steps", "none", "--steps", "3", "--objective", "teacher"]))
    assert a.support == ["a.zarr", "b.h5"] and a.settings.max_steps is None and a.settings.steps == 3 \
        and a.settings.objective == "teacher"
    v = build(ValidateConfig, p.parse_args(["validate-reference", "--xc", "LDA,VWN", "B3LYP"]))
    assert v.xc == ["LDA,VWN", "B3LYP"]  # functional strings keep their commas
    t = build(TuneConfig, p.parse_args(["tune", "small", "optim.lr=1e-3", "--num-samples", "3"]))
    assert (t.space, t.overrides, t.num_samples, t.name, t.out) == \
        ("small", ["optim.lr=1e-3"], 3, "sweep-small", "runs/tune/out")


@pytest.mark.parametrize("argv,needle", [
    (["generate", "--out", "o", "--steps", "ten"], "field 'steps': expected int, got 'ten'"),
    (["generate", "--out", "o", "--integrator", "rk4"], "invalid choice: 'rk4'"),
    (["generate", "--out", "o", "--dt", "[1]"], "field 'dt': expected float"),
    (["evaluate", "m", "s", "--max-trajectories", "2.5"], "field 'rollout.max_trajectories': expected int"),
])
def test_bad_values_name_the_field(argv, needle, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("argv,needle", [
    (["evaluate", "m", "s", "--max-trajectories", "0"], "max_trajectories: expected an integer >= 1, got 0"),
    (["evaluate", "m", "s", "--context", "0"], "context: expected an integer >= 1, got 0"),
    (["evaluate", "m", "s", "--batch", "0"], "batch: expected an integer >= 1, got 0"),
    (["tune", "debug", "--num-samples", "0"], "num_samples: expected None or an integer >= 1, got 0"),
])
def test_silent_no_ops_are_refused(argv, needle, capsys):
    """Values that would run and do nothing (or be clamped silently) are errors naming the flag's field."""
    from rtml.cli.main import main

    assert main(argv) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("cls", [TrainConfig, MetaTrainConfig])
def test_list_fields_covers_every_override(cls):
    """``rtml train --list-fields`` lists exactly the keys a ``section.field=value`` override can set."""
    listed = [line.split()[0] for line in field_table(cls).splitlines()]
    assert listed == list(flatten(to_dict(cls())))


def test_list_fields_command(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["train", "--list-fields"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "optim.lr" in out and "model.dynamics.recurrent" in out and "eval.context" in out


def test_help_comes_from_comments_and_docstrings():
    @dataclasses.dataclass(kw_only=True)
    class C:
        """``a``: from the docstring; ``b``/``c`` — shared text. ``None``: not a field."""
        a: int = 1
        b: int = 2
        c: int = 3  # the comment wins
        d: int = 4

    assert field_help(C) == {"a": "from the docstring", "b": "shared text. ``None``: not a field",
                             "c": "the comment wins"}

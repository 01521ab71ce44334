"""The ``rtml`` command line: ``main()`` parses, each command's ``run(cfg)`` works.

Subcommands live in :mod:`rtml.cli`, one module each, exposing ``add_parser(subparsers)`` (which sets
``func`` to a function taking the parsed namespace) and a ``run(cfg)`` that tests call directly.
"""

from __future__ import annotations

import argparse
import sys

from rtml.cli import (
    adapt,
    convert,
    evaluate,
    generate,
    inspect,
    meta_train,
    propagate,
    quickstart,
    train,
    tune,
    validate_reference,
)
from rtml.datasets.errors import DataError, PropagationError
from rtml.platform.configio import ConfigError
from rtml.platform.modelio import ModelFileError
from rtml.platform.tracking import TrackingError
from rtml.platform.train.driver import TrainingError

COMMANDS = (generate, convert, inspect, validate_reference, quickstart, train, tune, evaluate, meta_train, propagate,
            adapt)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtml", description="Learn to accelerate real-time TDDFT.")
    sub = p.add_subparsers(dest="command", required=True)
    for mod in COMMANDS:
        mod.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DataError, PropagationError, ConfigError, TrackingError, ModelFileError,
            TrainingError) as exc:
        print(f"rtml {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

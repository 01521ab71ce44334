"""The ``rtml`` command line: ``main()`` dispatches, each command's ``main(argv)`` parses and its ``run(cfg)`` works.

Commands live in :mod:`rtml.cli`, one module each, exposing ``HELP`` (one line), ``main(argv) -> int`` (flags from
the command's config dataclass through :mod:`rtml.cli.parsing`) and a ``run(cfg)`` that tests call directly.
"""

from __future__ import annotations

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
from rtml.platform.workers.launch import TrainingError

COMMANDS = {"generate": generate, "convert": convert, "inspect": inspect, "validate-reference": validate_reference,
            "quickstart": quickstart, "train": train, "tune": tune, "evaluate": evaluate, "meta-train": meta_train,
            "propagate": propagate, "adapt": adapt}


def usage() -> str:
    lines = ["usage: rtml COMMAND [flags]   (rtml COMMAND --help: its flags)", "",
             "Learn to accelerate real-time TDDFT.", "", "commands:"]
    return "\n".join(lines + [f"  {name:<20}{mod.HELP}" for name, mod in COMMANDS.items()])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"{usage()}\n\nrtml: error: unknown command {command!r}", file=sys.stderr)
        return 2
    try:
        return int(COMMANDS[command].main(rest) or 0)
    except (DataError, PropagationError, ConfigError, TrackingError, ModelFileError, TrainingError) as exc:
        print(f"rtml {command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

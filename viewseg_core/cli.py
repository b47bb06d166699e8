"""The ``viewseg`` command line: one entry point, one subcommand per job.

Each subcommand lives in its own module, which exposes ``register(subparsers)``; it adds
its parser and sets ``func`` to the callable that runs it. Modules are imported lazily
when listed here so that ``viewseg --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# module path -> the subcommand it registers. Later work appends here.
SUBCOMMAND_MODULES: list[str] = [
    "viewseg_core.pretrain",
    "viewseg_ros.bag_import",
    "viewseg_core.data.cli",
    "training.train",
    "training.evaluate",
    "training.export3d",
    "training.export_model",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="viewseg", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        # Bad input (a corrupt checkpoint, a missing file, a config typo) is the user's to
        # fix: say what is wrong in one line, not in a traceback.
        print(f"viewseg {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

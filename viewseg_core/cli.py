"""The ``viewseg`` command line: one entry point, one subcommand per job.

Each subcommand lives in its own module, which exposes ``register(subparsers)``; it adds
its parser and sets ``func`` to the callable that runs it. Modules are imported lazily
when listed here so that ``viewseg --help`` stays fast.

Every failure the user can fix (a bad argument, a missing or corrupt file, an output path
that cannot be written, a device this machine lacks) ends the command with one line on
stderr, ``viewseg CMD: error: ...``, and exit status 2; never a traceback. The argument
types and :func:`resolve_device` below are shared by all subcommands for that reason.
"""
from __future__ import annotations

import argparse
import importlib
import math
import sys
from typing import Callable

# module path -> the subcommand it registers. Later work appends here.
SUBCOMMAND_MODULES: list[str] = [
    "viewseg_core.pretrain",
    "viewseg_ros.bag_import",
    "viewseg_core.data.cli",
    "training.train",
    "training.evaluate",
    "training.export3d",
    "training.export_model",
    "training.confidence",
    "viewseg_ros.render_cli",
]

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (``viewseg CMD: error: ...``), exit 2.

    The stock parser prints the whole usage block first, which for ``viewseg eval`` is a
    dozen lines above the one that says what is wrong.
    """

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------- argument types
def _number(kind: type, minimum: float, inclusive: bool, what: str) -> Callable[[str], int | float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or (value < minimum if inclusive else value <= minimum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_int = _number(int, 1, True, "an integer >= 1")
nonnegative_int = _number(int, 0, True, "an integer >= 0")
positive_float = _number(float, 0.0, False, "a number > 0")
nonnegative_float = _number(float, 0.0, True, "a number >= 0")


def fraction(text: str) -> float:
    """A number in [0, 1] (an overlap, a confidence)."""
    value = nonnegative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def image_size(text: str) -> tuple[int, int]:
    """'320x240' -> (width, height), both >= 1."""
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 320x240 (WIDTHxHEIGHT), got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def resolve_device(name: str):
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a usable ``torch.device``, else ValueError.

    Checked up front so that asking for a GPU this machine lacks is one clear line, not a
    CUDA traceback from deep inside the first ``.to(device)``.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine "
                         f"(torch {torch.__version__}, {build}); use --device cpu or auto")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} "
                         f"CUDA device(s)")
    return device


# --------------------------------------------------------------------------- errors
def describe_error(exc: BaseException) -> str:
    """One line for an error the user can fix; an OSError names its path and reason."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        where = str(exc.filename) if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        return f"{where}: {exc.strerror}"
    return " ".join(str(exc).split()) or type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="viewseg", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")  # subparsers inherit OneLineParser
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from viewseg_core.cpu_allocator import keep_freed_memory

    keep_freed_memory()   # a policy of this process: tensors reuse freed memory (cpu_allocator)
    return run_subcommand(args.command, args.func, args)


def run_subcommand(command: str, func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """``func(args)``'s exit status; a user-fixable error is one stderr line and exit 2."""
    try:
        return int(func(args) or 0)
    except (ValueError, OSError) as exc:
        # Bad input (a corrupt checkpoint, a missing file, a config typo, an unwritable or
        # full output path, a missing GPU) is the user's to fix: say what is wrong in one
        # line, not in a traceback. OSError includes FileNotFoundError and PermissionError.
        print(f"viewseg {command}: error: {describe_error(exc)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

"""The ``cryomine`` command line: parses arguments and calls the core, nothing else.

Each command group lives in its own module with a ``register(subparsers)`` function that adds
its parser and sets ``func`` (called with the parsed namespace). Errors CryoMine raises on
purpose (:class:`~cryomine_core.errors.CryomineError`) are printed as one line and exit with
status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cryomine_core import __version__
from cryomine_core.errors import CryomineError

# Command-group modules, in the order they appear in --help.
_GROUPS = ("info", "table", "formats", "extract", "simulate", "structures", "classify", "align", "subdivide", "segment")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryomine",
        description="CryoMine: classification, template-free subdivision, alignment/averaging and segmentation "
                    "of cryo-electron tomograms. Volumes are MRC files; particle sets are STAR tables.",
    )
    parser.add_argument("--version", action="version", version=f"cryomine {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="verbosity of the log written to stderr (default: INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _GROUPS:  # a command module that fails to import is an error, never a command missing from --help
        importlib.import_module(f"cryomine_core.cli.{name}").register(sub)
    return parser


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """Add the common ``--device`` option to a command's parser."""
    parser.add_argument("--device", default="auto",
                        help="compute device: auto (CUDA if present, else CPU), cpu, cuda or cuda:N (default: auto). "
                             "Asking for cuda without a usable GPU is an error.")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s cryomine %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        from cryomine_core.io.outputs import check_output_path

        out = getattr(args, "out", None)
        if out:  # the output location is checked before any work (commands writing one file say so)
            check_output_path(out, getattr(args, "out_kind", "folder"))
        result = args.func(args)
    except CryomineError as exc:
        print(f"cryomine: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cryomine: interrupted. Files already in the output folder are complete (each is written atomically); "
              "run the same command again (with --resume where the command offers it) to continue.", file=sys.stderr)
        return 130
    finally:
        if "torch.distributed" in sys.modules:  # a torchrun process leaves its group in step with the others
            from cryomine_core.distributed import teardown

            teardown()
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

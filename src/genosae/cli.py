"""Command line: thin wrappers over the Python API, one subcommand per pipeline step.

Each subpackage contributes its subcommands through ``genosae.<subpackage>._cli.add_commands``;
this module only assembles them and turns :class:`~genosae.errors.InputError` into one clean line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from genosae import __version__
from genosae.errors import InputError

#: Subpackages whose ``_cli.add_commands(subparsers)`` registers subcommands, in pipeline order.
COMMAND_MODULES = (
    "genosae._cli_core",
    "genosae.genome._cli",
    "genosae.model._cli",
    "genosae.sae._cli",
    "genosae.features._cli",
    "genosae.tracks._cli",
    "genosae.biomarkers._cli",
    "genosae.report._cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genosae",
        description="Candidate biomarkers from sparse autoencoders on genomic language models.",
    )
    parser.add_argument("--version", action="version", version=f"genosae {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # subpackage without commands yet
                continue
            raise
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        result = args.func(args)
    except InputError as err:
        print(f"genosae {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"genosae {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

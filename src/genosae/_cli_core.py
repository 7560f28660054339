"""Whole-run subcommands: ``validate`` (the config and every input it names) and ``summarize``
(headline numbers of a finished run). Each step's own commands live in its subpackage's ``_cli``."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check the config and every input it names")
    p.add_argument("--config", required=True, help="YAML config (e.g. config/config.yaml)")
    p.set_defaults(func=_validate)

    p = sub.add_parser("summarize", help="headline numbers of a finished run as Markdown")
    p.add_argument("--results", default="results", help="the workflow's outdir")
    p.set_defaults(func=_summarize)


def _validate(args: argparse.Namespace) -> int:
    from genosae.validate import validate_inputs

    summary = validate_inputs(args.config)
    print(summary)
    return 0


def _summarize(args: argparse.Namespace) -> int:
    from genosae.summary import summarize_run

    print(summarize_run(args.results))
    return 0

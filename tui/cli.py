"""`twotier-tui`: train with the app, train headless, or attach the app to a ledger. Errors end here."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..engine.config import Config, load_config
from ..store import DEFAULT_LEDGER, TwoTierError
from .console.args import OneLineParser
from .console.headless import VERDICT_EXIT, Thresholds, run_headless

DEFAULT_CONFIG = Path("config.json")

# Every config key is a flag of the same name with dashes, typed and explained by the Config field itself.
SETTINGS = tuple(spec.name for spec in dataclasses.fields(Config))


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Every config key as a flag (dashes for underscores), typed and explained by its Config field."""
    settings = parser.add_argument_group(
        "settings", "every config key is a flag (dashes for underscores); a flag overrides the config file"
    )
    for spec in dataclasses.fields(Config):
        _add_setting(settings, spec)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="twotier-tui",
        description="Fine-tune with a cheap fast log every log_steps and a full eval every eval_steps, "
        "every event kept in a SQLite ledger.",
    )
    parser.add_argument("--config", type=Path, help=f"config file (default: ./{DEFAULT_CONFIG} if present)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--headless", action="store_true", help="train without the app, print each event")
    mode.add_argument(
        "--attach",
        nargs="?",
        const=str(DEFAULT_LEDGER),
        metavar="LEDGER",
        help="open the app on a ledger another process writes (no training)",
    )
    parser.add_argument("--run", metavar="ID", help="with --attach: the run to show (default: latest)")
    parser.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a stopped or crashed run (id, prefix, name or 'latest') from its last "
        "complete checkpoint, with its recorded config; flags given override it",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show library warnings")
    add_config_flags(parser)
    ci = parser.add_argument_group(
        "CI verdict (with --headless)",
        f"judged on the last full eval; a finished run that misses one exits with status {VERDICT_EXIT}",
    )
    ci.add_argument("--min-probe-accuracy", type=_fraction, metavar="F", help="fail below this probe accuracy (0 to 1)")
    ci.add_argument("--max-val-loss", type=float, metavar="L", help="fail above this validation loss")
    ci.add_argument("--max-gap", type=float, metavar="G", help="fail above this val-minus-train gap")
    ci.add_argument("--fail-on-nan", action="store_true", help="fail when any loss or grad norm was NaN or infinite")
    ci.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per event on standard output (summary and verdict go to stderr)",
    )
    return parser


def _add_setting(group: argparse._ArgumentGroup, spec: dataclasses.Field[Any]) -> None:
    flag = "--" + spec.name.replace("_", "-")
    default = getattr(Config(), spec.name)
    help_text = f"{spec.metadata['help']} (default: {json.dumps(default)})".replace("%", "%%")
    kinds = setting_types(spec.name)
    if kinds == (bool,):
        group.add_argument(flag, dest=spec.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        return
    if kinds == (bool, str):  # chat_template: the flag alone means true, else a file or template (or false)
        group.add_argument(
            flag,
            dest=spec.name,
            nargs="?",
            const=True,
            type=_flag_value(spec.name, kinds),
            metavar="VALUE",
            help=help_text,
        )
        return
    metavars: dict[tuple[type, ...], str] = {(int,): "N", (float,): "X", (str,): "TEXT", (dict,): "JSON"}
    metavar = metavars.get(kinds, "VALUE")
    group.add_argument(flag, dest=spec.name, type=_flag_value(spec.name, kinds), metavar=metavar, help=help_text)


def setting_types(key: str) -> tuple[type, ...]:
    """The types a config key takes, None left out: (int,), (str,), (bool, str)..."""
    hint = typing.get_type_hints(Config)[key]
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return tuple(typing.get_origin(kind) or kind for kind in kinds if kind is not type(None))


def _flag_value(key: str, kinds: tuple[type, ...]) -> Callable[[str], Any]:
    """A flag's text as the key's type: numbers as numbers, an object as JSON, text as it is."""

    def convert(text: str) -> Any:
        if kinds == (str,):
            return text
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        for kind in kinds:
            if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
                return value
        if str in kinds:
            return text
        wanted = {int: "a whole number", float: "a number", dict: "a JSON object", bool: "true or false"}
        raise argparse.ArgumentTypeError(
            f"must be {' or '.join(wanted.get(kind, kind.__name__) for kind in kinds)}, got {text!r}"
        )

    convert.__name__ = key
    return convert


def thresholds_from_args(args: argparse.Namespace) -> Thresholds:
    return Thresholds(
        min_probe_accuracy=args.min_probe_accuracy,
        max_val_loss=args.max_val_loss,
        max_gap=args.max_gap,
        fail_on_nan=args.fail_on_nan,
    )


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def config_from_args(args: argparse.Namespace, path: Path | None = None) -> Config:
    """config.json (or `path`, or --config) with the flags given applied, validated."""
    path = path or args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    overrides = {key: getattr(args, key) for key in SETTINGS}
    return load_config(path, overrides)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.headless and (args.json or thresholds_from_args(args) != Thresholds()):
        parser.error("--json and the CI verdict flags need --headless")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="twotier: %(levelname)s: %(message)s"
    )
    try:
        return _dispatch(args)
    except TwoTierError as err:
        print(f"twotier: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> Any:
    if args.attach is not None:
        from .app import run_app

        return run_app(attach=Path(args.attach), run_ref=args.run)
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)  # torchrun's or accelerate launch's processes
    if launched > 1 and not args.headless:
        raise TwoTierError(
            f"under a launcher ({launched} processes) train with --headless; watch with twotier-tui --attach LEDGER",
            exit_code=2,
        )
    resume = None
    if args.resume is not None and os.environ.get("RANK", "0") not in ("", "0"):
        # Rank 0 alone reads the ledger (on its node's disk) and sends its resume point to the other ranks.
        config = config_from_args(args)
    elif args.resume is not None:
        from ..engine.resume import find_resume_point

        given = {key: value for key, value in vars(args).items() if key in SETTINGS and value is not None}
        ledger = given.pop("ledger", None) or config_from_args(args).ledger
        resume = find_resume_point(ledger, args.resume, given)
        config = resume.config
    else:
        config = config_from_args(args)
    for warning in config.tier_warnings() if os.environ.get("RANK", "0") in ("", "0") else ():
        print(f"twotier: warning: {warning}", file=sys.stderr)
    if args.headless:
        return run_headless(config, thresholds=thresholds_from_args(args), json_lines=args.json, resume=resume)
    from .app import run_app

    return run_app(config=config, resume=resume)


if __name__ == "__main__":
    sys.exit(main())

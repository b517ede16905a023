"""`twotier-tui`: train with the app, train headless, or attach the app to a ledger. Errors end here."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from ..engine.config import Config, load_config
from ..store import DEFAULT_LEDGER, TwoTierError
from .console.headless import VERDICT_EXIT, Thresholds, run_headless

DEFAULT_CONFIG = Path("config.json")

# Flags that override config.json, by config key. Each takes the key's type.
OVERRIDES: dict[str, tuple[type, str]] = {
    "log_steps": (int, "fast log every N steps (0: off)"),
    "eval_steps": (int, "full eval every N steps (0: off)"),
    "max_steps": (int, "optimizer steps to train"),
    "eval_samples": (int, "validation examples scored at each full eval"),
    "probe_size": (int, "held-out probe examples generated at each full eval"),
    "batch_size": (int, "examples per device per step"),
    "learning_rate": (float, "peak learning rate"),
    "seed": (int, "random seed"),
    "model": (str, "hub id, local folder, or 'demo'"),
    "dataset": (str, "JSONL/CSV/Parquet file, hub dataset name, or 'demo'"),
    "validation": (str, "validation file (else a split of the dataset)"),
    "ledger": (str, f"ledger file (default {DEFAULT_LEDGER})"),
    "output_dir": (str, "where checkpoints go"),
    "run_name": (str, "a name for the run in the ledger"),
    "data_format": (str, "prompt_answer, prompt_completion, messages, text or tokenized (else told from the columns)"),
    "dtype": (str, "the weights' dtype: auto, float32, bfloat16 or float16"),
    "attn_implementation": (str, "attention kernel: eager, sdpa, flash_attention_2..."),
}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that override config.json, by config key."""
    for key, (kind, help_text) in OVERRIDES.items():
        parser.add_argument("--" + key.replace("_", "-"), dest=key, type=kind, help=help_text)
    parser.add_argument(
        "--chat-template",
        nargs="?",
        const=True,
        metavar="TEMPLATE",
        help="apply a chat template: the tokenizer's own (no value), a .jinja file or a template",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    add_config_flags(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="show library warnings")
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


def thresholds_from_args(args: argparse.Namespace) -> Thresholds:
    return Thresholds(
        min_probe_accuracy=args.min_probe_accuracy,
        max_val_loss=args.max_val_loss,
        max_gap=args.max_gap,
        fail_on_nan=args.fail_on_nan,
    )


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def config_from_args(args: argparse.Namespace, path: Path | None = None) -> Config:
    """config.json (or `path`, or --config) with the flags given applied, validated."""
    path = path or args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    overrides = {key: getattr(args, key, None) for key in (*OVERRIDES, "chat_template")}
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
    resume = None
    if args.resume is not None:
        from ..engine.resume import find_resume_point

        given = {key: value for key, value in vars(args).items() if key in OVERRIDES and value is not None}
        ledger = given.pop("ledger", None) or config_from_args(args).ledger
        resume = find_resume_point(ledger, args.resume, given)
        config = resume.config
    else:
        config = config_from_args(args)
    for warning in config.tier_warnings():
        print(f"twotier: warning: {warning}", file=sys.stderr)
    if args.headless:
        return run_headless(config, thresholds=thresholds_from_args(args), json_lines=args.json, resume=resume)
    from .app import run_app

    return run_app(config=config, resume=resume)


if __name__ == "__main__":
    sys.exit(main())

"""`twotier ledger …`: questions to the ledger after the run (runs, show, compare, export, sql, plot, backup).

Reads only, through a read-only connection, and never imports torch: it answers in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from ...store import DEFAULT_LEDGER, Kind, LedgerReader, RunInfo, RunStatus, TwoTierError, query
from ...store.backup import backup_ledger
from ...store.export import (
    EVENT_COLUMNS,
    FORMATS,
    PROBE_COLUMNS,
    event_records,
    probe_records,
    write_parquet,
    write_records,
)
from ..cli import add_config_flags
from ..render import (
    EVAL_COLUMNS,
    PROMPT_CELL,
    answer_history,
    fmt_clock,
    fmt_duration,
    fmt_fraction,
    fmt_loss,
    fmt_metric,
    fmt_steps,
    one_line,
)
from ..text import clip, printable
from .args import OneLineParser
from .plot import plot_curves
from .steer import add_commands

Command = Callable[[LedgerReader, argparse.Namespace, TextIO], int]
BLOCKS = " ▁▂▃▄▅▆▇█"
CHART_HEIGHT = 6
CHART_WIDTH = 60
CELL_LIMIT = 48
RUN_HELP = "a run id, a unique id prefix, a run name, or 'latest'"
COMPARED = ("val", "probes", "gap", "train")  # the full-eval columns `compare` puts side by side


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="twotier", description="Look into a twotier run ledger, and queue and steer runs through it."
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    ledger = groups.add_parser(
        "ledger", help="query the run ledger", description="Read-only questions to a twotier ledger (SQLite)."
    )
    commands = ledger.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = OneLineParser(add_help=False)
    common.add_argument(
        "--ledger",
        type=Path,
        default=DEFAULT_LEDGER,
        metavar="PATH",
        help=f"the ledger file (default: {DEFAULT_LEDGER})",
    )

    def add(name: str, handler: Command, summary: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=summary, description=description)
        sub.set_defaults(handler=handler)
        return sub

    add_commands(groups, common, add_config_flags)

    runs = add(
        "runs",
        _runs,
        "one line per run",
        "One line per run, newest first: id, name, status ('stale' when a live run's heartbeat stopped), "
        "model, steps, start, duration, and the final train loss (batch loss at the last logged step), "
        "val loss and probe accuracy (at the last full eval).",
    )
    runs.add_argument("--status", choices=[*(s.value for s in RunStatus), "stale"], help="only runs with this status")
    show = add(
        "show",
        _show,
        "a summary of one run",
        "One run: its config, its training-loss curve, its full evals, and the probe examples that never "
        "matched, that flipped to MATCH and that regressed (with the step where each happened).",
    )
    show.add_argument("run", metavar="RUN", help=RUN_HELP)
    show.add_argument("--probe", type=int, metavar="N",
                      help="instead: probe N's answer at every full eval, the words changed since the one before «marked»")  # fmt: skip
    compare = add(
        "compare",
        _compare,
        "runs side by side",
        "Full evals of several runs side by side by step, and the config keys that differ.",
    )
    compare.add_argument("runs", metavar="RUN", nargs="+", help=RUN_HELP)
    export = add(
        "export",
        _export,
        "events, full evals or probe answers as JSONL, CSV or Parquet",
        "Write one record per event (or per full eval, or per probe answer) for one run or all runs.",
    )
    export.add_argument("--run", metavar="ID", help=f"only this run ({RUN_HELP}); default: all runs")
    export.add_argument("--format", choices=FORMATS, default="jsonl", help="default: jsonl")
    export.add_argument(
        "--what",
        choices=("events", "evals", "probes"),
        default="events",
        help="events: every fast log and full eval (default); evals: full evals only; "
        "probes: one row per probe example per full eval",
    )
    export.add_argument("--probes", dest="what", action="store_const", const="probes", help="same as --what probes")
    export.add_argument("--out", type=Path, metavar="FILE", help="write here (default: standard output)")
    sql = add(
        "sql",
        _sql,
        "run a read-only SQL query",
        "Run one SQL statement on a read-only connection and print its rows. Statements that would "
        "write are refused. Texts live in table `text` (joined by id from event.prompt, event.golden, "
        "event.output, probe.prompt, …).",
    )
    sql.add_argument("query", metavar="SQL", help="e.g. \"SELECT step, val_loss FROM event WHERE kind = 'full'\"")
    sql.add_argument("--format", choices=("table", "csv", "jsonl"), default="table", help="default: table")
    plot = add(
        "plot",
        _plot,
        "draw loss and probe accuracy to an image (needs matplotlib)",
        "Training loss, validation loss and probe accuracy against step, several runs on one figure. "
        "Needs matplotlib, which `make` installs into .venv (else: .venv/bin/pip install matplotlib).",
    )
    plot.add_argument("runs", metavar="RUN", nargs="+", help=RUN_HELP)
    plot.add_argument("--out", type=Path, required=True, metavar="FILE", help="the image to write, e.g. loss.png")
    backup = add(
        "backup",
        _backup,
        "copy the ledger consistently, even while a run writes it",
        "Copy the ledger with SQLite's online backup API, check the copy's integrity, and never "
        "overwrite an existing file.",
    )
    backup.add_argument("dest", type=Path, metavar="DEST", help="the new file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.group != "ledger":
            return int(args.handler(args, sys.stdout))
        with LedgerReader(args.ledger) as reader:
            return args.handler(reader, args, sys.stdout)
    except TwoTierError as err:
        print(f"twotier: error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:
        # The reader of our output (e.g. `head`) left; keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        return 130


def _backup(reader: LedgerReader, args: argparse.Namespace, out: TextIO) -> int:
    size = backup_ledger(reader.path, args.dest)
    _print(out, [f"copied {reader.path} to {args.dest} ({size:,} bytes, integrity ok)"])
    return 0


def _runs(reader: LedgerReader, args: argparse.Namespace, out: TextIO) -> int:
    rows = [
        [
            s.run.id,
            cell(s.run.name),
            s.status,
            cell(s.run.model, 30),
            fmt_steps(s.run.last_step, s.run.max_steps),
            fmt_clock(s.run.started_at),
            fmt_duration(s.duration_s),
            fmt_loss(s.final_train_loss),
            fmt_loss(s.final_val_loss),
            fmt_fraction(s.final_probe_accuracy),
        ]
        for s in query.run_summaries(reader, args.status)
    ]
    headers = ["id", "name", "status", "model", "steps", "started", "took", "train loss", "val loss", "probe acc"]
    _print(out, table(headers, rows) if rows else ["(no runs)"])
    return 0


def _show(reader: LedgerReader, args: argparse.Namespace, out: TextIO) -> int:
    run = reader.run(args.run)
    if args.probe is not None:
        return _show_probe(reader, run, args.probe, out)
    summary = query.summarize(reader, run)
    lines = [
        f"run {run.id}  {cell(run.name)}  {summary.status}",
        f"model {cell(run.model, 80)} · dataset {cell(run.dataset, 80)} · steps {fmt_steps(run.last_step, run.max_steps)}"
        f" · started {fmt_clock(run.started_at)} · took {fmt_duration(summary.duration_s)}",
    ]
    if run.world_size > 1:
        nodes = f"{run.node_count} node{'s' if run.node_count != 1 else ''}"
        lines.append(
            f"{run.world_size} processes on {nodes} ({cell(run.backend or '?')}, {cell(run.distributed_type or '?')})"
            f" · global batch {run.global_batch_size or '?'} · hosts {cell(', '.join(run.hosts), 200)}"
        )
    if run.error:
        lines.append(f"error: {cell(run.error, 400)}")
    lines += ["", "config"] + _indent(
        table(["key", "value"], [[key, _value(v)] for key, v in sorted(run.config.items())])
    )
    curves = query.curves(reader, run)
    lines += ["", "training loss (batch loss at each logged step)"] + _indent(chart(curves.steps, curves.train_loss))
    evals = reader.full_evals(run.id)
    lines += ["", f"full evals ({len(evals)})"] + _indent(_eval_table(evals))
    logged = query.logged_metrics(reader, run.id)
    if logged:
        rows = [[m.key, _at(m.first, m.first_step), _at(m.last, m.last_step)] for m in logged]
        lines += ["", "also logged by the trainer (json_extract(event.metrics, '$.KEY') in SQL)"]
        lines += _indent(table(["key", "first", "last"], rows))
    history = query.probe_history(reader, run.id)
    for title, changes in (
        ("probe examples that never matched (output at the last full eval)", history.never_matched),
        ("probe examples that flipped to MATCH", history.flipped_to_match),
        ("probe examples that regressed (MATCH lost)", history.regressed),
    ):
        lines += ["", f"{title}: {len(changes)}"] + _indent(_probe_table(changes))
    _print(out, lines)
    return 0


def _show_probe(reader: LedgerReader, run: RunInfo, probe_id: int, out: TextIO) -> int:
    answers = reader.probe_answers(run.id, probe_id)
    if not answers:
        raise TwoTierError(f"{reader.path}: run {run.id} has no probe #{probe_id} (probes are numbered from 0)")
    probe = answers[-1][1]
    golden = "no golden: answered only" if probe.golden is None else f"golden {cell(probe.golden, 200)}"
    lines = [f"run {run.id}  {cell(run.name)}  probe #{probe_id}", f"prompt {cell(probe.prompt, 400)}", golden, "",
             "step    MATCH chrF  answer (words changed since the eval before «marked»)"]  # fmt: skip
    lines += answer_history(answers, marks=("«", "»")).plain.splitlines()
    _print(out, lines)
    return 0


def _compare(reader: LedgerReader, args: argparse.Namespace, out: TextIO) -> int:
    result = query.compare(reader, args.runs)
    tags = [f"[{i + 1}]" for i in range(len(result.runs))]
    lines = ["runs"] + _indent(
        table(
            ["", "id", "name", "status"],
            [[tag, run.id, cell(run.name), reader.run_status(run)] for tag, run in zip(tags, result.runs)],
        )
    )
    diff = [[key, *(_value(value) for value in values)] for key, values in result.config_diff.items()]
    lines += ["", f"config keys that differ: {len(diff)}"] + _indent(table(["key", *tags], diff) if diff else [])
    metrics = [next(column for column in EVAL_COLUMNS if column.key == key) for key in COMPARED]
    headers = ["step"] + [f"{column.header} {tag}" for column in metrics for tag in tags]
    rows = [
        [str(step)]
        + [
            column.text(result.evals[run.id][step]) if step in result.evals[run.id] else "-"
            for column in metrics
            for run in result.runs
        ]
        for step in result.steps
    ]
    lines += ["", "full evals by step"] + _indent(table(headers, rows) if rows else ["(no full evals)"])
    _print(out, lines)
    return 0


def _export(reader: LedgerReader, args: argparse.Namespace, out: TextIO) -> int:
    run_id = None if args.run is None else reader.run(args.run).id
    if args.what == "probes":
        records, columns = probe_records(reader, run_id), PROBE_COLUMNS
    else:
        records, columns = event_records(reader, run_id, Kind.FULL if args.what == "evals" else None), EVENT_COLUMNS
    if args.format == "parquet":
        if args.out is None:
            raise TwoTierError("parquet is a binary format: give --out FILE")
        count = write_parquet(records, columns, args.out)
    elif args.out is None:
        count = _write_to_terminal(records, columns, args.format, out)
    else:
        with _open_out(args.out) as handle:
            count = write_records(records, columns, args.format, handle)
    if args.out is not None:
        print(f"twotier: wrote {count} records ({args.what}) to {args.out}", file=sys.stderr)
    return 0


def _sql(reader: LedgerReader, args: argparse.Namespace, out: TextIO) -> int:
    result = query.run_sql(reader, args.query)
    if args.format == "table":
        rows = [[cell(_sql_value(value), CELL_LIMIT) for value in row] for row in result.rows]
        _print(out, table([cell(c) for c in result.columns], rows) + [f"({len(rows)} rows)"])
    else:
        _write_to_terminal(result.records(), tuple(result.columns), args.format, out)
    return 0


def _plot(reader: LedgerReader, args: argparse.Namespace, out: TextIO) -> int:
    plot_curves([query.curves(reader, reader.run(ref)) for ref in args.runs], args.out)
    print(f"twotier: wrote {args.out} ({len(args.runs)} runs)", file=out)
    return 0


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned columns; a column of numbers is aligned to the right."""
    columns = list(zip(headers, *rows))
    widths = [max(len(value) for value in column) for column in columns]
    numeric = [all(_is_number(value) for value in column[1:]) for column in columns]

    def line(values: Sequence[str]) -> str:
        cells = [v.rjust(w) if right else v.ljust(w) for v, w, right in zip(values, widths, numeric)]
        return "  ".join(cells).rstrip()

    return [line(headers)] + [line(row) for row in rows]


def chart(
    steps: Sequence[int], values: Sequence[float], height: int = CHART_HEIGHT, width: int = CHART_WIDTH
) -> list[str]:
    """A block chart of `values` (resampled to `width` columns); a column holding a NaN shows as ×."""
    columns = _resample(values, width)
    finite = [v for v in columns if math.isfinite(v)]
    if not finite:
        return ["(no finite loss to draw)"]
    low, high = min(finite), max(finite)
    span = (high - low) or 1.0
    levels = [round((v - low) / span * (height * 8 - 1)) + 1 if math.isfinite(v) else 0 for v in columns]
    lines = []
    for row in range(height):
        floor = (height - 1 - row) * 8
        bars = "".join(
            BLOCKS[min(8, max(0, level - floor))] if level else ("×" if row == height - 1 else " ") for level in levels
        )
        label = fmt_loss(high) if row == 0 else fmt_loss(low) if row == height - 1 else ""
        lines.append(f"{label:>10} ┤{bars}".rstrip())
    first, last = f"step {steps[0]}", str(steps[-1])
    lines.append(" " * 12 + first + " " * max(len(columns) - len(first) - len(last), 1) + last)
    return lines


def cell(text: str, limit: int = CELL_LIMIT) -> str:
    """Data text for one table cell: printable, on one line, cut at `limit`."""
    return printable(clip(text, limit)).replace("\n", "⏎")


def _write_to_terminal(records: Any, columns: tuple[str, ...], fmt: str, out: TextIO) -> int:
    # JSON escapes every non-ASCII character losslessly; CSV has no escapes, so its text is made printable.
    if fmt == "csv":
        records = ({k: printable(v) if isinstance(v, str) else v for k, v in r.items()} for r in records)
    return write_records(records, columns, fmt, out, ascii_only=True)


@contextmanager
def _open_out(path: Path) -> Any:
    try:
        handle = path.open("w", encoding="utf-8", newline="")
    except OSError as err:
        raise TwoTierError(f"{path}: cannot write the export: {err.strerror}") from err
    with handle:
        yield handle


def _eval_table(evals: list[Any]) -> list[str]:
    if not evals:
        return ["(no full evals)"]
    return table([c.header for c in EVAL_COLUMNS], [[c.text(e) for c in EVAL_COLUMNS] for e in evals])


def _probe_table(changes: list[query.ProbeChange]) -> list[str]:
    if not changes:
        return ["(none)"]
    rows = [
        [
            f"#{c.probe_id}",
            str(c.step),
            one_line(c.prompt, PROMPT_CELL, from_left=True),
            cell(c.golden or "-"),
            cell(c.model_output),
        ]
        for c in changes
    ]
    return table(["probe", "step", "prompt", "golden", "model output"], rows)


def _resample(values: Sequence[float], width: int) -> list[float]:
    """At most `width` columns, each the mean of its share of values; NaN if any of them is NaN."""
    if len(values) <= width:
        return list(values)
    buckets = [values[i * len(values) // width : (i + 1) * len(values) // width] for i in range(width)]
    return [sum(b) / len(b) if all(math.isfinite(v) for v in b) else math.nan for b in buckets]


def _print(out: TextIO, lines: list[str]) -> None:
    out.write("\n".join(lines) + "\n")


def _indent(lines: list[str]) -> list[str]:
    return ["  " + line for line in lines]


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return cell(text, 80)


def _at(value: float | None, step: int | None) -> str:
    return "-" if value is None or step is None else f"{fmt_metric(value)} (step {step})"


def _sql_value(value: Any) -> str:
    if value is None:
        return "NULL"
    return value.hex() if isinstance(value, bytes) else str(value)


def _is_number(value: str) -> bool:
    if value in ("-", ""):
        return True
    try:
        float(value.split(" ")[0])
    except ValueError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())

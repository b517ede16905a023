"""README.md as a contract: every fenced block says how it is run and checked, and `make docs` rewrites
what the blocks show from real runs.

The line before each fence is an annotation, `<!-- readme: KIND [ARGUMENT] -->`; a block without one
fails `make test` (tests/test_readme.py), so no block goes untested by accident. The kinds:

    run             a shell script (bash -e); it must succeed
    output          a console session: `$ command` lines (a line ending in `\\` goes on) and what each shows
                    (stdout and stderr as one stream); each command's output must match what is shown
    sql             SQL statements, each ending in `;`; each must return rows from the README's ledger
    python          a Python script; it must run to its end
    app             interactive `twotier-tui` commands, one a line: each runs in tmux at 100x30, must show
                    an event (and, where it trains, its run running), and must quit on `q` (confirmed
                    when it asks, which stops a training cleanly) with status 0
    screen SIZE CMD what the app shows: CMD runs in tmux at SIZE (e.g. 100x30) until its screen matches
    ci              a GitHub Actions workflow: its `run:` steps run (a command an output block above
                    already ran, such as the same training, is not run twice), except the install step,
                    which is checked to install the CPU build of torch first (it needs the network)
    bench           the table `make bench` prints (minutes of measuring): not run; `make docs` copies it
                    from runs/bench/table.txt when that exists
    skip REASON     not run, for the reason given (a GPU install, `make test` itself...)

Annotations that stand before other text: `stamp` (the next line names the machine the outputs below it
were taken on), `config-table` (the next table is made from the Config fields), `schema` (the next table
lists every column of the ledger's tables), `export-fields` (the next table lists the export's fields)
and `image PATH` (the image on the next line is the file PATH a command above wrote).

Every block runs in README order in one temporary folder that holds a copy of config.json and a link
to the checkout's .venv, with .venv/bin first on PATH, offline, and torch on one thread. Shown output is
compared after normalising both sides: run ids, times, durations, numbers (by their format: `0.1234` is
a number with four decimals), true/false, MATCH or not, ✅/❌/⚠️ marks, bar and sparkline characters,
and the model's own answers (the line after `🤖 MODEL (n tokens):`, a JSON `model_output`, the answers of
a probe's history) become placeholders; runs of spaces count as one. So format drift fails the test,
run-to-run figures do not.
A line that is only `…` stands for any number of lines; a line ending in `…` for any line so begun.

`python -m docs.readme` runs every block and reports; `--update` (what `make docs` runs) rewrites the
README's outputs, screens, tables and stamps, keeps each `…` where it stands, copies each image, and
says which blocks changed.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import platform
import re
import time
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
ELLIPSIS = "…"
TORCH_THREADS = 1  # the blocks run with torch on one thread: on a shared 2-core machine two spin against each other
KINDS = ("run", "output", "sql", "python", "app", "screen", "ci", "bench", "skip")
MARKERS = ("stamp", "config-table", "schema", "export-fields", "image")
_ANNOTATION = re.compile(r"^<!-- readme: ([a-z-]+)(?: (.*?))? -->$")
_FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass
class Block:
    """One fenced block of the README and its annotation (kind None: there is none)."""

    kind: str | None
    argument: str
    info: str
    lines: list[str]
    heading: str
    first: int  # index of the first body line among the README's lines
    end: int  # index of the closing fence

    @property
    def name(self) -> str:
        first = next((line.strip() for line in self.lines if line.strip()), "")
        return f"{self.heading} / {first[:60]}"

    @property
    def line_number(self) -> int:
        return self.first  # the opening fence, counted from 1


@dataclass
class Marker:
    """An annotation before something other than a fence (a table, a stamp line, an image)."""

    kind: str
    argument: str
    line: int  # index of the annotation line
    heading: str


@dataclass
class Readme:
    """The README as lines, with its blocks and its other annotations."""

    lines: list[str]
    blocks: list[Block] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)

    def marked(self, kind: str) -> list[Marker]:
        return [marker for marker in self.markers if marker.kind == kind]

    def table_after(self, marker: Marker) -> tuple[int, int]:
        """The span (start, end) of the Markdown table that follows `marker`."""
        start = marker.line + 1
        end = start
        while end < len(self.lines) and self.lines[end].startswith("|"):
            end += 1
        return start, end


def parse(text: str) -> Readme:
    """The README's fenced blocks with their annotations, and the other annotations."""
    readme = Readme(text.split("\n"))
    lines, heading, index = readme.lines, "(top)", 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#") and not line.startswith("#!"):
            heading = line.lstrip("#").strip()
        fence = _FENCE.match(line)
        if fence:
            end = next((i for i in range(index + 1, len(lines)) if lines[i].rstrip() == "```"), len(lines))
            note = _ANNOTATION.match(lines[index - 1].strip()) if index else None
            kind, argument = (note.group(1), note.group(2) or "") if note else (None, "")
            readme.blocks.append(Block(kind, argument, fence.group(1), lines[index + 1 : end], heading, index + 1, end))
            index = end + 1
            continue
        note = _ANNOTATION.match(line.strip())
        if note and not (index + 1 < len(lines) and _FENCE.match(lines[index + 1])):
            readme.markers.append(Marker(note.group(1), note.group(2) or "", index, heading))
        index += 1
    return readme


# ---- console sessions ---------------------------------------------------------------------------


@dataclass
class Command:
    """One `$ command` of an output block and the lines the README shows under it."""

    text: str
    shown: list[str]


def session(block: Block) -> list[Command]:
    commands: list[Command] = []
    lines = iter(block.lines)
    for line in lines:
        if line.startswith("$ "):
            text = line[2:]
            while text.endswith("\\"):
                text += "\n" + next(lines, "")
            commands.append(Command(text, []))
        elif commands:
            commands[-1].shown.append(line)
        else:
            raise ValueError(f"README line {block.first + 1}: output before the first `$ ` command")
    return commands


# ---- normalising and matching -------------------------------------------------------------------

_BARS = "\u2580-\u259f×"
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r'"model_output": "(?:[^"\\]|\\.)*"'), '"model_output": <text>'),
    (re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2})?"), "<time>"),
    (re.compile(r"\d{8}-\d{6}"), "<time>"),
    (re.compile(r"\b\d+:\d{2}:\d{2}\b"), "<duration>"),
    # How much of the elapsed time was loading is shown only when it took a second or more: a machine's figure.
    (re.compile(r" +\(loading <duration> of it\)"), ""),
    (re.compile(r"[-+]?\d+\.\d{5,}(?:e[-+]?\d+)?"), "<float>"),  # a repr, before its digits can pass for an id
    (re.compile(r"\b[0-9a-f]{12}\b"), "<id>"),
    (re.compile(r"[-+]?\d+(?:\.\d+)?e[-+]?\d+"), "<sci>"),
    (re.compile(r"\b(?:true|false|True|False)\b"), "<bool>"),
    (re.compile(r"NO MATCH|no match|MATCH"), "<match>"),
    (re.compile("✅|❌|⚠\ufe0f?"), "<mark>"),
    (re.compile(f"[{_BARS}](?:[{_BARS} ]*[{_BARS}])?"), "<bar>"),
    (re.compile("─+"), "─"),
]
_FLOAT = re.compile(r"[-+]?\d[\d,]*\.(\d+)")
_INT = re.compile(r"[-+]?\d[\d,]*")
_MODEL = re.compile(r"🤖 MODEL \(\d+ tokens?\):")
# A line of a probe's history (`twotier ledger show RUN --probe N`): step, verdict, chrF, then the answer.
_HISTORY = re.compile(r"^(step +\d+ +(?:✅|❌|💬) +(?:\d\.\d\d|-))(?:\s.*)?$")


def normalise(line: str) -> str:
    """A line with its run-to-run figures replaced by placeholders that keep their format."""
    for pattern, placeholder in _RULES:
        line = pattern.sub(placeholder, line)
    # A float keeps its number of decimals (a format); one with five or more (a repr, whose length varies: a
    # Unix time's has 6, or 5 when the last is a zero) is already `<float>`, by the rule before the run ids.
    line = _FLOAT.sub(lambda m: f"<{'#' * len(m.group(1))}>", line)
    line = _INT.sub("<n>", line)
    line = " ".join(line.split())
    return line.removesuffix(" <bar>")  # a scrollbar at the end of a screen line


def normalise_all(lines: list[str]) -> list[str]:
    """Each line normalised; the line after `🤖 MODEL (n tokens):` and the answer of a probe history's line
    are the model's answers, which differ from one CPU to the next, so they become placeholders."""
    out = [
        normalise(history.group(1)) + " <model answer>" if (history := _HISTORY.match(line)) else normalise(line)
        for line in lines
    ]
    for index, line in enumerate(lines[:-1]):
        if _MODEL.search(line):
            out[index + 1] = "<model answer>"
    return out


def _trim(lines: list[str]) -> list[str]:
    lines = [line.rstrip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def align(shown: list[str], actual: list[str]) -> list[tuple[int, int]] | None:
    """For each shown line, the span of actual lines it stands for; None when they do not match."""
    shown, actual = _trim(shown), _trim(actual)
    want, have = normalise_all(shown), normalise_all(actual)

    @cache
    def rest(i: int, j: int) -> tuple[tuple[int, int], ...] | None:
        if i == len(want):
            return () if j == len(have) else None
        if shown[i].strip() == ELLIPSIS:
            for k in range(j, len(have) + 1):
                tail = rest(i + 1, k)
                if tail is not None:
                    return ((j, k), *tail)
            return None
        if j == len(have):
            return None
        if shown[i].rstrip().endswith(ELLIPSIS):
            fits = have[j].startswith(normalise(shown[i].rstrip()[:-1]))
        else:
            fits = have[j] == want[i]
        tail = rest(i + 1, j + 1) if fits else None
        return None if tail is None else ((j, j + 1), *tail)

    spans = rest(0, 0)
    return None if spans is None else list(spans)


def matches(shown: list[str], actual: list[str]) -> bool:
    return align(shown, actual) is not None


def regenerate(shown: list[str], actual: list[str]) -> list[str] | None:
    """The actual lines in the shape of `shown`: its `…` kept where they stand; None when they differ."""
    spans = align(shown, actual)
    if spans is None:
        return None
    shown, actual = _trim(shown), _trim(actual)
    out = []
    for line, (start, _) in zip(shown, spans):
        if line.strip() == ELLIPSIS:
            out.append(line)
        elif line.rstrip().endswith(ELLIPSIS):
            out.append(_cut(actual[start], line.rstrip()[:-1]))
        else:
            out.append(actual[start])
    return out


def _cut(actual: str, prefix: str) -> str:
    """`actual` cut where it has said what `prefix` says, then `…` (with the prefix's own spacing)."""
    wanted = normalise(prefix)
    spacing = prefix[len(prefix.rstrip()) :]
    for end in range(1, len(actual) + 1):
        if normalise(actual[:end]) == wanted:
            return actual[:end] + spacing + ELLIPSIS
    return actual


def explain(shown: list[str], actual: list[str]) -> str:
    """A diff of the normalised lines, for a failure message."""
    diff = difflib.unified_diff(
        normalise_all(_trim(shown)),
        normalise_all(_trim(actual)),
        "README (normalised)",
        "actual (normalised)",
        lineterm="",
    )
    return "\n".join(diff) + "\n--- actual output ---\n" + "\n".join(_trim(actual))


# ---- tables made from the code ------------------------------------------------------------------


def config_table() -> list[str]:
    """The configuration table: one row per Config field, from its type, default and help text."""
    from twotier.engine.config import Config
    from twotier.tui.cli import setting_types

    rows = ["| key | flag | default | meaning |", "| --- | --- | --- | --- |"]
    defaults = Config()
    for spec in dataclasses.fields(Config):
        flag = "--" + spec.name.replace("_", "-")
        flags = f"`{flag}`, `--no-{flag[2:]}`" if setting_types(spec.name) == (bool,) else f"`{flag}`"
        default = json.dumps(getattr(defaults, spec.name))
        meaning = spec.metadata["help"].replace("|", "\\|")
        rows.append(f"| `{spec.name}` | {flags} | `{default}` | {meaning} |")
    return rows


def backticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def machine() -> str:
    """Where the outputs were taken: the date, the CPU, any GPU, torch and its threads, Python."""
    import torch

    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), {gpu}, "
        f"torch {metadata.version('torch')} on {TORCH_THREADS} thread, Python {platform.python_version()}"
    )


def stamp_line() -> str:
    return f"*Outputs below: taken by `make docs` on {machine()}.*"


# ---- running every block, and `make docs` -------------------------------------------------------


def run_all(update: bool = False, readme_path: Path = README) -> int:
    """Run every block in a fresh sandbox and report; with `update`, rewrite the README from what they show."""
    import tempfile

    from .sandbox import Sandbox

    readme = parse(readme_path.read_text(encoding="utf-8"))
    unannotated = [block for block in readme.blocks if block.kind not in KINDS]
    for block in unannotated:
        print(f"README line {block.line_number}: block without a known annotation: {block.name}")
    replacements: list[tuple[int, int, list[str]]] = []
    failed = bool(unannotated)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="twotier-readme-") as folder:
        sandbox = Sandbox(REPO, Path(folder))
        try:
            for block in readme.blocks:
                if block.kind in ("skip", "bench", None):
                    print(f"skip        line {block.line_number:4d}  {block.kind}: {block.name}")
                    continue
                began = time.monotonic()
                outcome = sandbox.execute(block, update=update)
                verdict = "FAIL" if outcome.problems else ("changed" if outcome.warnings else "ok")
                print(
                    f"{verdict:7s} {time.monotonic() - began:5.1f} s  line {block.line_number:4d}  {block.kind}: {block.name}"
                )
                for problem in outcome.problems + outcome.warnings:
                    print("    " + problem.replace("\n", "\n    "))
                failed = failed or bool(outcome.problems)
                if update and outcome.lines is not None and outcome.lines != block.lines:
                    replacements.append((block.first, block.end, outcome.lines))
            if update and not failed:
                replacements += _generated(readme, Path(folder))
        finally:
            sandbox.close()
    print(f"{len(readme.blocks)} blocks in {time.monotonic() - started:.0f} s")
    if update and not failed:
        lines = list(readme.lines)
        for start, end, new in sorted(replacements, reverse=True):
            lines[start:end] = new
        readme_path.write_text("\n".join(lines), encoding="utf-8")
        print(f"{readme_path.name}: {len(replacements)} parts rewritten")
    elif update:
        print(f"{readme_path.name} left as it was: fix the failures above first")
    return 1 if failed else 0


def _generated(readme: Readme, sandbox: Path) -> list[tuple[int, int, list[str]]]:
    """The README parts made from the code and the machine, and the images a block wrote (copied)."""
    import shutil

    parts = []
    stamp = stamp_line()
    for marker in readme.marked("stamp"):
        parts.append((marker.line + 1, marker.line + 2, [stamp]))
    for marker in readme.marked("config-table"):
        start, end = readme.table_after(marker)
        parts.append((start, end, config_table()))
    for marker in readme.marked("image"):
        target = re.search(r"\]\(([^)]+)\)", readme.lines[marker.line + 1])
        if target:
            shutil.copy(sandbox / marker.argument, REPO / target.group(1))
    table = REPO / "runs" / "bench" / "table.txt"
    for block in readme.blocks:
        if block.kind == "bench" and table.exists():
            new = table.read_text(encoding="utf-8").rstrip("\n").split("\n")
            if new != block.lines:
                print("the benchmark table changed: the figures the Benchmarks section quotes from it need a look")
            parts.append((block.first, block.end, new))
    return parts


if __name__ == "__main__":
    import argparse

    from docs.readme import run_all as run  # the module itself, not this __main__ copy: sandbox.py imports it

    parser = argparse.ArgumentParser(prog="python -m docs.readme", description="Run the README's blocks.")
    parser.add_argument("--update", action="store_true", help="rewrite README.md from what the blocks show")
    raise SystemExit(run(update=parser.parse_args().update))

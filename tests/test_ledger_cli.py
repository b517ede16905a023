"""`twotier ledger …` as a user runs it, on ledgers of real runs; figures checked against the ledger."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from support import ESCAPE_OUTPUT, copy_ledger, digest, rows
from twotier.store import LedgerReader
from twotier.tui.console.ledger import main
from twotier.tui.render import fmt_loss

COMMANDS = ["runs", "show", "compare", "export", "sql", "plot"]


def twotier(capsys: pytest.CaptureFixture[str], ledger: Path, *args: str) -> tuple[int, str, str]:
    code = main(["ledger", *args, "--ledger", str(ledger)])
    out, err = capsys.readouterr()
    return code, out, err


def in_subprocess(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_runs_prints_one_line_per_run_with_its_final_figures(capsys, two_runs):
    code, out, _ = twotier(capsys, two_runs.ledger, "runs")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1 + 2
    for run in (two_runs.fast, two_runs.slow):
        (batch_loss,) = rows(
            two_runs.ledger, "SELECT batch_loss FROM event WHERE run_id = ? ORDER BY id DESC LIMIT 1", run.run_id
        )[0]
        val_loss, accuracy = rows(
            two_runs.ledger,
            "SELECT val_loss, probe_accuracy FROM event WHERE run_id = ? AND kind = 'full' ORDER BY id DESC LIMIT 1",
            run.run_id,
        )[0]
        (line,) = [line for line in lines if line.startswith(run.run_id)]
        assert line.split()[2:5] == ["finished", "demo", "40/40"]
        assert line.split()[-3:] == [fmt_loss(batch_loss), fmt_loss(val_loss), f"{accuracy:.2f}"]


def test_runs_status_filter_keeps_only_that_status(capsys, two_runs):
    assert twotier(capsys, two_runs.ledger, "runs", "--status", "failed")[1] == "(no runs)\n"


def test_show_accepts_an_id_a_prefix_a_name_and_latest(capsys, two_runs):
    firsts = {
        twotier(capsys, two_runs.ledger, "show", ref)[1].splitlines()[0]
        for ref in (two_runs.slow.run_id, two_runs.slow.run_id[:6], "slow", "latest")
    }
    assert firsts == {f"run {two_runs.slow.run_id}  slow  finished"}


def test_show_prints_each_config_key_with_its_value(capsys, short_run):
    out = twotier(capsys, short_run.ledger, "show", short_run.run_id)[1]
    rows = [line.split() for line in out.splitlines()]
    assert ["learning_rate", "0.003"] in rows and ["log_steps", "5"] in rows


def test_show_lists_exactly_the_config_keys_not_the_writers_host_and_pid(capsys, short_run):
    lines = twotier(capsys, short_run.ledger, "show", short_run.run_id)[1].splitlines()
    table = lines[lines.index("config") + 2 : lines.index("training loss (batch loss at each logged step)") - 1]
    assert sorted(line.split()[0] for line in table) == sorted(short_run.config.to_dict())


def test_show_draws_the_loss_curve_as_text_blocks_between_its_extremes(capsys, short_run):
    losses = [
        loss for (loss,) in rows(short_run.ledger, "SELECT batch_loss FROM event WHERE run_id = ?", short_run.run_id)
    ]
    lines = twotier(capsys, short_run.ledger, "show", short_run.run_id)[1].splitlines()
    top = lines.index("training loss (batch loss at each logged step)") + 1
    assert lines[top].split()[0] == f"{max(losses):.4f}"
    assert lines[top + 5].split()[0] == f"{min(losses):.4f}"
    assert len(lines[top + 5].split("┤")[1]) == len(losses)  # one column per logged step
    assert lines[top + 6].split() == ["step", "5", "40"]


def test_show_prints_the_full_eval_table_with_the_ledger_figures(capsys, short_run):
    evals = rows(
        short_run.ledger,
        "SELECT step, train_loss_mean, val_loss, probe_accuracy FROM event "
        "WHERE run_id = ? AND kind = 'full' ORDER BY step",
        short_run.run_id,
    )
    lines = twotier(capsys, short_run.ledger, "show", short_run.run_id)[1].splitlines()
    start = lines.index("full evals (2)") + 2
    for line, (step, train_mean, val_loss, accuracy) in zip(lines[start : start + 2], evals):
        assert line.split()[:3] == [str(step), fmt_loss(train_mean), fmt_loss(val_loss)]
        assert line.split()[-2] == f"{accuracy:.2f}"


def test_show_lists_flips_and_regressions_with_their_step(capsys, flips):
    lines = twotier(capsys, flips, "show", "flips")[1].splitlines()
    flipped = lines.index("probe examples that flipped to MATCH: 2")
    regressed = lines.index("probe examples that regressed (MATCH lost): 2")
    assert [line.split()[:2] for line in lines[flipped + 2 : flipped + 4]] == [["#0", "40"], ["#3", "40"]]
    assert [line.split()[:2] for line in lines[regressed + 2 : regressed + 4]] == [["#1", "40"], ["#3", "60"]]


def test_show_makes_model_output_printable(capsys, flips):
    out = twotier(capsys, flips, "show", "flips")[1]
    assert rows(flips, "SELECT count(*) FROM text WHERE body = ?", ESCAPE_OUTPUT) == [(1,)]
    assert "\x1b" not in out and "␛[2Jwiped" in out


def test_compare_prints_the_differing_config_keys_and_the_evals_side_by_side(capsys, two_runs):
    fast, slow = two_runs.fast.run_id, two_runs.slow.run_id
    lines = twotier(capsys, two_runs.ledger, "compare", fast, slow)[1].splitlines()
    assert [line.split()[1:3] for line in lines if line.startswith("  learning_rate")] == [["0.003", "0.001"]]
    val = {
        run: dict(rows(two_runs.ledger, "SELECT step, val_loss FROM event WHERE run_id = ? AND kind = 'full'", run))
        for run in (fast, slow)
    }
    table = lines[lines.index("full evals by step") + 2 :]
    assert [line.split()[:3] for line in table] == [
        [str(step), fmt_loss(val[fast][step]), fmt_loss(val[slow][step])] for step in (20, 40)
    ]


def test_export_writes_one_json_record_per_event_with_the_issue_fields(capsys, two_runs):
    out = twotier(capsys, two_runs.ledger, "export", "--run", "slow")[1]
    records = [json.loads(line) for line in out.splitlines()]
    expected = rows(
        two_runs.ledger, "SELECT step, kind, loss FROM event WHERE run_id = ? ORDER BY id", two_runs.slow.run_id
    )
    assert [(r["step"], r["kind"], r["loss"]) for r in records] == expected
    assert {
        "run_id",
        "step",
        "kind",
        "prompt",
        "golden",
        "loss",
        "prompt_tokens",
        "golden_tokens",
        "model_output",
        "output_tokens",
        "match",
        "train_loss_mean",
        "val_loss",
        "gap",
        "probe_accuracy",
        "eval_seconds",
    } <= set(records[0])


def test_export_without_a_run_covers_every_run(capsys, two_runs):
    out = twotier(capsys, two_runs.ledger, "export", "--format", "csv")[1]
    assert len(out.splitlines()) == 1 + rows(two_runs.ledger, "SELECT count(*) FROM event")[0][0]


def test_export_probes_flag_writes_one_row_per_probe_answer(capsys, short_run):
    out = twotier(capsys, short_run.ledger, "export", "--probes")[1]
    records = [json.loads(line) for line in out.splitlines()]
    expected = rows(short_run.ledger, "SELECT step, probe_id, match FROM probe ORDER BY event_id, probe_id")
    assert [(r["step"], r["probe_id"], r["match"]) for r in records] == [(s, p, bool(m)) for s, p, m in expected]
    assert list(records[0]) == [
        "run_id",
        "step",
        "probe_id",
        "prompt",
        "golden",
        "model_output",
        "match",
        "loss",
        "score",
    ]


def test_export_evals_writes_only_full_evals(capsys, short_run):
    out = twotier(capsys, short_run.ledger, "export", "--what", "evals")[1]
    assert [json.loads(line)["step"] for line in out.splitlines()] == [20, 40]


def test_export_to_a_csv_file_says_how_many_records(capsys, short_run, tmp_path):
    code, out, err = twotier(capsys, short_run.ledger, "export", "--format", "csv", "--out", str(tmp_path / "e.csv"))
    assert code == 0 and out == ""
    assert err == f"twotier: wrote 8 records (events) to {tmp_path / 'e.csv'}\n"
    assert len((tmp_path / "e.csv").read_text().splitlines()) == 1 + 8


def test_export_parquet_holds_the_same_records(capsys, short_run, tmp_path):
    twotier(capsys, short_run.ledger, "export", "--format", "parquet", "--out", str(tmp_path / "e.parquet"))
    table = pq.read_table(tmp_path / "e.parquet")
    expected = rows(short_run.ledger, "SELECT step, val_loss FROM event ORDER BY id")
    assert list(zip(table.column("step").to_pylist(), table.column("val_loss").to_pylist())) == expected


def test_sql_prints_the_rows_as_a_table(capsys, short_run):
    sql = "SELECT step, val_loss FROM event WHERE kind = 'full' ORDER BY step"
    lines = twotier(capsys, short_run.ledger, "sql", sql)[1].splitlines()
    assert lines[0].split() == ["step", "val_loss"]
    assert [tuple(line.split()) for line in lines[1:-1]] == [(str(s), str(v)) for s, v in rows(short_run.ledger, sql)]
    assert lines[-1] == "(2 rows)"


def test_sql_csv_format_is_for_scripts(capsys, short_run):
    out = twotier(
        capsys, short_run.ledger, "sql", "SELECT step, kind FROM event ORDER BY id LIMIT 2", "--format", "csv"
    )[1]
    assert out.splitlines() == ["step,kind", "5,fast", "10,fast"]


def test_sql_write_is_refused_in_one_line_and_the_ledger_is_unchanged(capsys, short_run, tmp_path):
    ledger = copy_ledger(short_run.ledger, tmp_path / "ledger.db")
    before = digest(ledger), rows(ledger, "SELECT count(*), sum(step) FROM event")
    code, out, err = twotier(capsys, ledger, "sql", "DELETE FROM event")
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "refused" in err and "the ledger was not changed" in err
    assert (digest(ledger), rows(ledger, "SELECT count(*), sum(step) FROM event")) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["runs", "--ledger", "missing.db"], "missing.db: no ledger there"),
        (["show", "nosuchrun"], "no run matches 'nosuchrun'"),
        (["sql", "SELEC 1"], 'sql: near "SELEC": syntax error'),
    ],
)
def test_errors_are_one_line_on_stderr_with_a_nonzero_exit(capsys, short_run, args, message):
    code = main(["ledger", *args] if "--ledger" in args else ["ledger", *args, "--ledger", str(short_run.ledger)])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("twotier: error: ") and message in err


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help_naming_the_ledger_option(capsys, command):
    with pytest.raises(SystemExit) as caught:
        main(["ledger", command, "--help"])
    assert caught.value.code == 0
    assert "--ledger PATH" in capsys.readouterr().out


def test_plot_writes_one_png_of_several_runs(capsys, two_runs, tmp_path):
    code, out, _ = twotier(
        capsys, two_runs.ledger, "plot", "slow", two_runs.fast.run_id, "--out", str(tmp_path / "l.png")
    )
    assert code == 0 and out == f"twotier: wrote {tmp_path / 'l.png'} (2 runs)\n"
    assert (tmp_path / "l.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install_it_in_one_line(short_run, tmp_path):
    result = in_subprocess(
        "import sys; sys.modules['matplotlib'] = None\n"  # makes `import matplotlib` fail as if not installed
        "from twotier.tui.console.ledger import main\n"
        f"sys.exit(main(['ledger', 'plot', 'latest', '--out', {str(tmp_path / 'l.png')!r}, '--ledger', {str(short_run.ledger)!r}]))"
    )
    assert result.returncode == 1
    assert (
        result.stderr
        == "twotier: error: plot needs matplotlib, which is not installed: pip install matplotlib (make installs it into .venv)\n"
    )
    assert not (tmp_path / "l.png").exists()


def test_query_commands_never_import_torch_transformers_or_datasets(short_run):
    result = in_subprocess(
        "import sys\n"
        "from twotier.tui.console.ledger import main\n"
        f"for command in (['runs'], ['show', 'latest'], ['compare', 'latest', 'latest'], ['export'], ['sql', 'SELECT 1']):\n"
        f"    assert main(['ledger', *command, '--ledger', {str(short_run.ledger)!r}]) == 0\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'datasets', 'textual'}), file=sys.stderr)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "[]"


def test_backup_copies_the_ledger_and_refuses_to_overwrite(short_run, tmp_path, capsys):
    dest = tmp_path / "copy.db"
    assert main(["ledger", "backup", "--ledger", str(short_run.ledger), str(dest)]) == 0
    assert "integrity ok" in capsys.readouterr().out
    with LedgerReader(dest) as reader:
        assert len(list(reader.iter_events(short_run.run_id))) == len(short_run.events)
    assert main(["ledger", "backup", "--ledger", str(short_run.ledger), str(dest)]) == 1
    assert "already exists; the backup will not overwrite it" in capsys.readouterr().err


def test_show_probe_lists_one_probe_s_answer_at_every_full_eval_with_the_changed_words_marked(capsys, flips):
    lines = twotier(capsys, flips, "show", "flips", "--probe", "1")[1].splitlines()
    history = [line for line in lines if line.startswith("step ") and line.split()[1].isdigit()]
    assert [line.split()[1] for line in history] == ["20", "40", "60"]
    assert [line.split()[2] for line in history] == ["✅", "❌", "❌"]  # FLIP_PATTERN[1]
    assert "«" not in history[0] and "«" in history[1]  # the first answer has nothing to change from


def test_show_probe_that_does_not_exist_is_one_line(capsys, flips):
    code, _, err = twotier(capsys, flips, "show", "flips", "--probe", "99")
    assert code == 1 and err.strip().endswith("has no probe #99 (probes are numbered from 0)")

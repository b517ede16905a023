"""CI verdicts of `twotier-tui --headless`: thresholds that pass or fail a run (exit 3), and `--json` output."""

from __future__ import annotations

import json

import pytest

from support import headless, poisoned_model
from twotier.store import LedgerReader
from twotier.tui.cli import main
from twotier.tui.console.headless import VERDICT_EXIT, Thresholds

SHORT = ["--max-steps", "10", "--log-steps", "5", "--eval-steps", "10", "--batch-size", "16"]


@pytest.fixture(scope="module")
def last_full(short_run):
    return [event for event in short_run.events if event.is_full][-1]


def failures(thresholds: Thresholds, last_full, first_nan=None) -> list[str]:
    return [text for passed, text in thresholds.verdict(last_full, first_nan) if not passed]


def test_a_run_that_meets_every_threshold_passes(last_full):
    thresholds = Thresholds(
        min_probe_accuracy=last_full.probe_accuracy,
        max_val_loss=last_full.val_loss,
        max_gap=last_full.gap,
        fail_on_nan=True,
    )
    checks = thresholds.verdict(last_full, None)
    assert len(checks) == 4 and all(passed for passed, _ in checks)


def test_no_threshold_gives_no_verdict(last_full):
    assert Thresholds().verdict(last_full, None) == []


def test_probe_accuracy_below_the_minimum_fails_with_the_figures(last_full):
    assert failures(Thresholds(min_probe_accuracy=last_full.probe_accuracy + 0.5), last_full) == [
        f"probe accuracy {last_full.probe_accuracy:.4f} at step 40 is below --min-probe-accuracy "
        f"{last_full.probe_accuracy + 0.5:g}"
    ]


def test_val_loss_above_the_maximum_fails_with_the_figures(last_full):
    assert failures(Thresholds(max_val_loss=0.5), last_full) == [
        f"val loss {last_full.val_loss:.4f} at step 40 is above --max-val-loss 0.5"
    ]


def test_gap_above_the_maximum_fails_with_the_figures(last_full):
    assert failures(Thresholds(max_gap=last_full.gap - 0.1), last_full) == [
        f"gap {last_full.gap:.4f} at step 40 is above --max-gap {last_full.gap - 0.1:g}"
    ]


def test_a_threshold_that_no_full_eval_measured_fails():
    assert failures(Thresholds(max_val_loss=10.0), None) == [
        "val loss was not measured by a full eval, so --max-val-loss 10 is not met"
    ]


def test_a_nan_fails_only_with_fail_on_nan(last_full):
    nan_at = (5, "grad_norm", float("nan"))
    assert failures(Thresholds(fail_on_nan=True), last_full, nan_at) == ["grad norm is nan at step 5 (--fail-on-nan)"]
    assert failures(Thresholds(max_val_loss=100.0), last_full, nan_at) == []


def test_verdict_flags_need_headless(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--max-val-loss", "1"])
    assert caught.value.code == 2
    assert "need --headless" in capsys.readouterr().err


def test_a_run_that_misses_a_threshold_exits_3_and_says_which_with_the_figures(tmp_path):
    result = headless(tmp_path, *SHORT, "--max-val-loss", "0.01", "--min-probe-accuracy", "0")
    assert result.returncode == VERDICT_EXIT, result.stderr
    with LedgerReader(tmp_path / "ledger.db") as reader:
        full = [e for e in reader.iter_events(reader.run("latest").id) if e.is_full][-1]
    assert result.stdout.strip().splitlines()[-1] == (
        f"✖ verdict: FAIL (exit 3): val loss {full.val_loss:.4f} at step 10 is above --max-val-loss 0.01"
    )


def test_a_run_that_meets_its_thresholds_exits_0_with_a_pass_line(tmp_path):
    result = headless(tmp_path, *SHORT, "--max-val-loss", "100", "--min-probe-accuracy", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("✔ verdict: pass: probe accuracy ")


def test_fail_on_nan_fails_a_run_whose_loss_became_nan(tmp_path):
    # The model's weights hold a NaN, so every loss is NaN on any CPU; with stop_on_nan off the engine
    # finishes the run and only the verdict catches it.
    model = poisoned_model(tmp_path / "model")
    args = ["--max-steps", "2", "--log-steps", "1", "--eval-steps", "0", "--model", str(model), "--fail-on-nan"]
    result = headless(tmp_path, *args, config={"stop_on_nan": False})
    assert result.returncode == VERDICT_EXIT, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "✖ verdict: FAIL (exit 3): loss is nan at step 1 (--fail-on-nan)"


def test_json_prints_one_object_per_event_on_stdout_and_the_summary_on_stderr(tmp_path):
    result = headless(tmp_path, *SHORT, "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    with LedgerReader(tmp_path / "ledger.db") as reader:
        events = list(reader.iter_events())
    assert [(r["step"], r["kind"], r["loss"]) for r in records] == [(e.step, e.kind.value, e.loss) for e in events]
    assert result.stderr.strip().splitlines()[-1].startswith("✔ run ")

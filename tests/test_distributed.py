"""Distributed runs under a real `torchrun` (2 processes, gloo, on CPU): twotier's own CLI and a user's script.

Three launches, each judged by several tests: the CLI run paused, unpaused and stopped through the ledger, then
resumed under torchrun from its checkpoint; and a user's `Trainer` script joined by `TwoTier(trainer)`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support import REPO, rows, twotier
from twotier.engine.resume import last_complete_checkpoint
from twotier.store import Kind, LedgerReader, RunInfo, RunStatus, StepEvent
from twotier.store.control import request_control
from twotier.store.records import Action
from twotier.tui.cli import main

TORCHRUN = Path(sys.executable).with_name("torchrun")
LAUNCH_S = 240  # every launch runs under a timeout: a rank left in a collective must fail the test, not hang it
pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed")
# The CLI run: a fast log every 2 steps, a full eval every 10, more steps than it will take before its stop.
CLI = ["--log-steps", "2", "--eval-steps", "10", "--eval-samples", "11", "--probe-size", "4", "--max-new-tokens", "4"]
CLI += ["--batch-size", "4", "--max-length", "64", "--learning-rate", "3e-3", "--max-steps", "2000"]
RESUMED_STEPS = 6  # the resumed run trains this many steps past its checkpoint


@dataclass
class Launch:
    """A torchrun job, its output in files (a pipe nobody reads would fill and block rank 0's prints)."""

    child: subprocess.Popen[bytes]
    out: Path
    err: Path

    def poll(self) -> int | None:
        return self.child.poll()

    def worker(self, rank: int) -> int:
        """The process id of the worker of `rank` (timeout → torchrun → workers, told apart by their RANK)."""
        for launcher in _children(self.child.pid):
            for pid in _children(launcher):
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                if f"RANK={rank}".encode() in environ:
                    return pid
        raise AssertionError(f"no worker of rank {rank} under torchrun")

    def signal_launcher(self) -> None:
        os.kill(_children(self.child.pid)[0], signal.SIGTERM)  # torchrun itself, under coreutils' timeout

    def kill(self) -> None:
        os.killpg(self.child.pid, signal.SIGKILL)  # torchrun and both workers: they share the session

    def wait(self) -> tuple[int, str, str]:
        try:
            code = self.child.wait(timeout=LAUNCH_S + 30)
        finally:
            if self.child.poll() is None:
                self.kill()
        return code, self.out.read_text(), self.err.read_text()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def torchrun(*args: str, cwd: Path, name: str) -> Launch:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO / "tests")}
    command = ["timeout", str(LAUNCH_S), str(TORCHRUN), "--standalone", "--nproc-per-node", "2", *args]
    out, err = cwd / f"{name}.out", cwd / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
    return Launch(child, out, err)


def ledger_run(ledger: Path) -> RunInfo | None:
    if not ledger.exists():
        return None
    try:
        with LedgerReader(ledger) as reader:
            return reader.run("latest")
    except Exception:  # noqa: BLE001 - not written yet
        return None


def wait_until(child: Launch, ledger: Path, what: str, condition: Any) -> RunInfo:
    deadline = time.monotonic() + LAUNCH_S
    while time.monotonic() < deadline:
        run = ledger_run(ledger)
        if run is not None and condition(run):
            return run
        if child.poll() is not None:
            pytest.fail(f"torchrun ended before {what}: {child.err.read_text()[-3000:]}")
        time.sleep(0.1)
    child.kill()
    pytest.fail(f"never {what}")


def live_events(ledger: Path, run_id: str) -> list[StepEvent]:
    """The run's events that count (a resumed run supersedes those after its checkpoint), with their probes."""
    with LedgerReader(ledger) as reader:
        return [reader.event(e.id, with_probes=True) for e in reader.events_after(run_id) if e.id is not None]


@dataclass(frozen=True)
class Steered:
    """The CLI run paused and unpaused through the ledger and stopped by a SIGTERM to rank 1 alone; resumed under
    torchrun and stopped by a request in the ledger; resumed again and stopped by a SIGTERM to torchrun; then
    resumed on one process to the end."""

    folder: Path
    run_id: str
    paused_at: int
    stopped_at: int
    stopped: tuple[int, str, str]
    saved: set[str]  # the files of the checkpoint the signal's stop wrote
    saved_step: int | None  # the global step its trainer state holds
    stopped_run: RunInfo  # the run as that stop left it
    resumed_at: int  # where the last torchrun part ended (the signal to torchrun's stop)
    resumed: tuple[int, str, str]  # resumed, stopped from the ledger
    resumed_run: RunInfo
    signalled: tuple[int, str, str]  # resumed again, stopped by a SIGTERM to the torchrun parent
    signalled_run: RunInfo
    alone: subprocess.CompletedProcess[str]  # the last part, on one process

    @property
    def ledger(self) -> Path:
        return self.folder / "ledger.db"

    @property
    def end(self) -> int:
        return self.resumed_at + RESUMED_STEPS


def stopped_step(output: str, run_id: str) -> int:
    ended = re.search(rf"run {run_id} stopped at step (\d+)", output)
    assert ended is not None, output[-3000:]
    return int(ended.group(1))


@pytest.fixture(scope="module")
def steered(tmp_path_factory: pytest.TempPathFactory) -> Steered:
    folder = tmp_path_factory.mktemp("cli")
    ledger = folder / "ledger.db"
    where = ["--ledger", str(ledger), "--output-dir", str(folder / "out")]
    child = torchrun("-m", "twotier.tui.cli", "--headless", *CLI, *where, cwd=folder, name="stopped")
    try:
        run = wait_until(child, ledger, "reached step 4", lambda run: run.last_step >= 4)
        request_control(ledger, run.id, Action.PAUSE)
        paused = wait_until(child, ledger, "paused", lambda run: run.status is RunStatus.PAUSED)
        request_control(ledger, run.id, Action.UNPAUSE)
        wait_until(
            child, ledger, "went on", lambda run: run.status is RunStatus.RUNNING and run.last_step > paused.last_step
        )
        # Only rank 1 gets the signal: the ranks agree on it at the next step end.
        os.kill(child.worker(1), signal.SIGTERM)
    except BaseException:
        child.kill()
        raise
    stopped = child.wait()
    stopped_run = ledger_run(ledger)
    assert stopped_run is not None
    step = stopped_step(stopped[1], run.id)
    # What the stop saved, before the resumed run's checkpoints rotate it out (save_total_limit).
    checkpoint = folder / "out" / run.id / f"checkpoint-{step}"
    saved = {p.name for p in checkpoint.iterdir()} if checkpoint.is_dir() else set()
    saved_step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] if saved else None

    def resume_then_stop(after: int, name: str, stop: Callable[[Launch], object]) -> tuple[tuple[int, str, str], int]:
        child = torchrun("-m", "twotier.tui.cli", "--headless", "--resume", run.id, *where, cwd=folder, name=name)
        try:
            wait_until(child, ledger, "went on", lambda run: run.status is RunStatus.RUNNING and run.last_step > after)
            stop(child)
        except BaseException:
            child.kill()
            raise
        ended = child.wait()
        return ended, stopped_step(ended[1], run.id)

    resumed, resumed_at = resume_then_stop(step + 1, "resumed", lambda _: request_control(ledger, run.id, Action.STOP))
    resumed_run = ledger_run(ledger)
    assert resumed_run is not None
    # SIGTERM to the torchrun parent: it passes the signal on to both workers.
    signalled, resumed_at = resume_then_stop(resumed_at + 1, "signalled", lambda child: child.signal_launcher())
    signalled_run = ledger_run(ledger)
    assert signalled_run is not None

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [sys.executable, "-m", "twotier.tui.cli", "--headless", "--resume", run.id, *where]
    command += ["--max-steps", str(resumed_at + RESUMED_STEPS)]
    alone = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=LAUNCH_S)
    return Steered(
        folder, run.id, paused.last_step, step, stopped, saved, saved_step, stopped_run, resumed_at, resumed,
        resumed_run, signalled, signalled_run, alone,
    )  # fmt: skip


def test_a_sigterm_to_one_worker_stops_both_ranks_at_one_step_and_the_run_is_stopped(steered):
    code, out, err = steered.stopped
    # Rank 1 ends with 143 (its signal), so torchrun reports a failed worker; rank 0 ended the run stopped.
    assert "exitcode  : 143" in err and "Timed out" not in err and "Connection closed" not in err
    assert f"✖ run {steered.run_id} stopped at step {steered.stopped_at}" in out
    assert steered.stopped_at > steered.paused_at
    assert (steered.stopped_run.status, steered.stopped_run.interrupted) == (RunStatus.STOPPED, True)


def test_the_stopped_checkpoint_holds_both_ranks_random_states(steered):
    assert {"rng_state_0.pth", "rng_state_1.pth", "model.safetensors"} <= steered.saved
    assert steered.saved_step == steered.stopped_at


def test_the_pause_unpause_and_stop_requests_reached_both_ranks(steered):
    # A rank that had not paused, gone on or stopped would have left the other in a collective: no clean end.
    done = rows(steered.ledger, "SELECT action, done_at IS NOT NULL FROM request ORDER BY id")
    assert done == [("pause", 1), ("unpause", 1), ("stop", 1)]


def test_a_run_resumed_under_torchrun_and_stopped_from_the_ledger_ends_cleanly_on_both_ranks(steered):
    code, out, err = steered.resumed
    assert code == 0, err[-3000:]
    assert f"run {steered.run_id} stopped at step " in out and f"(resumed from step {steered.stopped_at})" in out
    assert (steered.resumed_run.status, steered.resumed_run.interrupted) == (RunStatus.STOPPED, False)


def test_a_sigterm_to_torchrun_stops_both_ranks_at_one_step_with_every_rank_s_state_saved(steered):
    code, out, err = steered.signalled
    assert "Timed out" not in err and "Connection closed" not in err, err[-3000:]
    assert f"✖ run {steered.run_id} stopped at step {steered.resumed_at}" in out
    assert (steered.signalled_run.status, steered.signalled_run.interrupted) == (RunStatus.STOPPED, True)
    # The one-process part resumed from this stop's checkpoint, which it accepts only with both ranks' states.
    assert f"(resumed from step {steered.resumed_at})" in steered.alone.stdout


def test_the_run_is_recorded_once_with_who_trained_it(steered):
    assert rows(steered.ledger, "SELECT id FROM run") == [(steered.run_id,)]
    for info in (steered.stopped_run, steered.resumed_run, steered.signalled_run):
        world = (info.world_size, info.node_count, info.backend, info.distributed_type, info.global_batch_size)
        assert world == (2, 1, "gloo", "MULTI_CPU", 2 * 4) and len(info.hosts) == 1


def test_a_run_resumed_on_one_process_warns_and_goes_on_to_its_end(steered):
    assert steered.alone.returncode == 0, steered.alone.stderr[-3000:]
    assert "was trained on 2 processes (global batch 8) and resumes on 1 (global batch 4)" in steered.alone.stderr
    assert f"run {steered.run_id} finished at step {steered.end} (resumed from step {steered.resumed_at})" in (
        steered.alone.stdout
    )
    assert rows(steered.ledger, "SELECT world_size FROM run") == [(1,)]


def test_the_run_has_one_event_per_tier_step_across_its_four_parts(steered):
    events = live_events(steered.ledger, steered.run_id)
    end = steered.end
    expected = [(step, Kind.FULL if step % 10 == 0 or step == end else Kind.FAST) for step in range(2, end + 1, 2)]
    if end % 2:
        expected.append((end, Kind.FULL))
    assert [(e.step, e.kind) for e in events] == expected
    assert not [key for key, count in Counter((e.step, e.kind) for e in events).items() if count > 1]
    assert {e.example_rank for e in events if e.step <= steered.resumed_at} == {0}
    assert all(len(e.probes) == 4 for e in events if e.is_full)


def test_rank_1_prints_nothing(steered):
    _, out, _ = steered.resumed
    last = stopped_step(out, steered.run_id)
    events = live_events(steered.ledger, steered.run_id)
    resumed = [e for e in events if steered.stopped_at < e.step <= last]
    assert out.count("FULL EVAL - Step") + out.count("FAST LOG - Step") == len(resumed)


@pytest.fixture(scope="module")
def one_call(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's Trainer script with `TwoTier(trainer)`: 8 steps, fast logs every 2, full evals every 4."""
    folder = tmp_path_factory.mktemp("one-call")
    script = str(REPO / "tests" / "distributed" / "one_call.py")
    code, _, err = torchrun(script, str(folder), cwd=folder, name="one-call").wait()
    assert code == 0, err[-3000:]
    return folder


def rank_figures(folder: Path) -> list[dict[str, Any]]:
    return [json.loads((folder / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def one_call_events(folder: Path) -> list[StepEvent]:
    with LedgerReader(folder / "ledger.db") as reader:
        run_id = reader.run("latest").id
    return live_events(folder / "ledger.db", run_id)


def test_the_one_call_api_records_one_run_of_two_processes_written_by_rank_0(one_call):
    ranks = rank_figures(one_call)
    assert [(r["world_size"], r["writes"]) for r in ranks] == [(2, True), (2, False)]
    assert ranks[0]["run_id"] == ranks[1]["run_id"]
    assert rows(one_call / "ledger.db", "SELECT id, world_size, backend FROM run") == [(ranks[0]["run_id"], 2, "gloo")]


def test_the_step_loss_is_token_weighted_over_both_ranks(one_call):
    ranks = rank_figures(one_call)
    events = one_call_events(one_call)
    assert [(e.step, e.kind) for e in events] == [(2, Kind.FAST), (4, Kind.FULL), (6, Kind.FAST), (8, Kind.FULL)]
    for event in events:
        (sum0, tokens0), (sum1, tokens1) = (r["steps"][str(event.step)] for r in ranks)
        assert event.batch_loss == pytest.approx((sum0 + sum1) / (tokens0 + tokens1), rel=1e-6)
        assert event.batch_loss != pytest.approx(sum0 / tokens0, rel=1e-6)  # not rank 0's alone


def test_the_sharded_validation_loss_equals_one_process_on_the_same_weights(one_call):
    last = one_call_events(one_call)[-1]
    assert last.eval_error is None and len(last.probes) == 4
    assert last.val_loss == pytest.approx(rank_figures(one_call)[0]["val_loss_alone"], rel=1e-5)


def test_a_checkpoint_missing_a_rank_s_random_state_is_not_resumed_from(tmp_path):
    for step, ranks in ((4, (0, 1)), (8, (0,))):  # the stop at 8 was cut short before rank 1 wrote its state
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        (folder / "model.safetensors").write_bytes(b"weights")
        for rank in ranks:
            (folder / f"rng_state_{rank}.pth").write_bytes(b"state")
    assert last_complete_checkpoint(tmp_path, world_size=2) == (tmp_path / "checkpoint-4", 4)
    assert last_complete_checkpoint(tmp_path, world_size=1) == (tmp_path / "checkpoint-8", 8)


def test_a_model_sharded_with_fsdp2_completes_its_full_eval_on_both_ranks_as_one_process_scores_it(one_call):
    # Sharded, every forward and generate is a collective: a rank running fewer of them would hang the other.
    fsdp2 = rank_figures(one_call)[0]["fsdp2"]
    assert fsdp2["sharded"] and fsdp2["error"] is None and fsdp2["answers"] == 4
    assert fsdp2["val_loss"] == pytest.approx(fsdp2["val_loss_alone"], rel=1e-5)


def test_an_eval_error_on_one_rank_ends_the_eval_on_both_with_its_rank_named(one_call):
    failures = [ranks["failed_eval"] for ranks in rank_figures(one_call)]
    assert failures == ["rank 1: RuntimeError: injected on rank 1"] * 2


def test_the_app_under_a_launcher_says_to_train_headless(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["--max-steps", "1"]) == 2
    assert "--headless" in capsys.readouterr().err


def test_ledger_show_says_who_trained_a_distributed_run(one_call):
    shown = twotier(one_call, "ledger", "show", "latest", "--ledger", str(one_call / "ledger.db"))
    assert shown.returncode == 0, shown.stderr
    assert "2 processes on 1 node (gloo, MULTI_CPU) · global batch 8 · hosts " in shown.stdout


def test_generating_on_rank_0_alone_under_fsdp2_would_hang_until_the_group_timeout(tmp_path):
    # Why the full eval runs on every rank: the same FSDP2 model, rank 0 calling generate by itself, fails
    # at the process-group timeout (5 s here, 30 minutes by default). The eval test above passes because
    # twotier does not do this.
    code, out, _ = torchrun(
        str(REPO / "tests" / "distributed" / "rank0_alone.py"), "5", cwd=tmp_path, name="alone"
    ).wait()
    assert "rank 0: generating alone" in out
    assert code != 0 and "completed" not in out
    assert re.search(r"rank \d: failed after", out), out[-2000:]

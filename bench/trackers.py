"""Issue 4, item 6: the training thread's time to log one event with trackio, MLflow and wandb, beside ours.

Each tracker runs in its own child process (`python -m bench.trackers NAME CALLS`) with every
offline switch set, so a tracker that hangs, fails or wants the network is skipped with its reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .stats import Row, Sample
from .workload import scratch_dir

SECTION = "6 vs trackers"
TRACKERS = ("ours", "trackio", "mlflow", "wandb")
# Offline switches for all three peers, and the telemetry switches of the libraries they load.
OFFLINE_ENV = {
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "WANDB_DISABLE_CODE": "true",
    "WANDB_DISABLE_GIT": "true",
    "WANDB_CONSOLE": "off",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "NO_PROXY": "localhost,127.0.0.1",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
}
REMOTE_ENV = ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL", "WANDB_API_KEY", "MLFLOW_TRACKING_URI")


def _scalars(event: Any) -> dict[str, float]:
    return {
        "loss": event.loss,
        "batch_loss": event.batch_loss,
        "learning_rate": event.learning_rate,
        "grad_norm": event.grad_norm,
        "tokens_per_s": event.tokens_per_s,
    }


def _ours(folder: Path) -> tuple[Callable[[Any], None], Callable[[], None]]:
    from twotier.store import RunStatus

    from .workload import open_run

    writer = open_run(folder / "ledger.db")
    return writer.submit, lambda: writer.close(RunStatus.FINISHED)


def _trackio(folder: Path) -> tuple[Callable[[Any], None], Callable[[], None]]:
    import trackio

    trackio.init(project="twotier-bench", name="bench", embed=False, auto_log_gpu=False, auto_log_cpu=False)
    return (lambda e: trackio.log({**_scalars(e), "example": e.prompt + e.golden}, step=e.step)), trackio.finish


def _mlflow(folder: Path) -> tuple[Callable[[Any], None], Callable[[], None]]:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = mlflow.create_experiment("twotier-bench", artifact_location=(folder / "artifacts").as_uri())
    mlflow.start_run(experiment_id=experiment)

    def log(event: Any) -> None:
        mlflow.log_metrics(_scalars(event), step=event.step)
        mlflow.log_text(event.prompt + event.golden, f"examples/{event.step}.txt")

    return log, mlflow.end_run


def _wandb(folder: Path) -> tuple[Callable[[Any], None], Callable[[], None]]:
    import wandb

    run = wandb.init(project="twotier-bench", mode="offline", dir=str(folder))
    return (lambda e: run.log({**_scalars(e), "example": e.prompt + e.golden}, step=e.step)), run.finish


def child(name: str, calls: int) -> None:
    """In the child process: set up one tracker, time `calls` paced log calls, print them as JSON."""
    from .ledgerwrite import fast_events, paced_put_times

    setups = {"ours": _ours, "trackio": _trackio, "mlflow": _mlflow, "wandb": _wandb}
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as folder:
        os.environ["TRACKIO_DIR"] = str(Path(folder) / "trackio")
        log, finish = setups[name](Path(folder).resolve())
        events = fast_events(calls + 10)
        for event in events[:10]:  # warm-up: first calls create tables and columns
            log(event)
        spent = paced_put_times(log, events[10:])
        finish()
    print(json.dumps(spent))


def _run_child(name: str, calls: int, timeout: float) -> tuple[Sample | None, str]:
    # A set TRACKIO_SPACE_ID or server URL, even empty, would point trackio at a remote Space.
    env = {key: value for key, value in os.environ.items() if key not in REMOTE_ENV} | OFFLINE_ENV
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.trackers", name, str(calls)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=Path.cwd(),
        )
    except subprocess.TimeoutExpired:
        return None, f"skipped: did not finish in {timeout:.0f} s offline"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        reason = "not installed" if "ModuleNotFoundError" in last else last[:120]
        return None, f"skipped: {reason}"
    return Sample.of(json.loads(done.stdout.strip().splitlines()[-1])).scaled(1e3), ""


def measure(quick: bool) -> list[Row]:
    calls, timeout = (200, 90.0) if quick else (1000, 240.0)
    results = {name: _run_child(name, calls, timeout) for name in TRACKERS}
    ours = results["ours"][0]
    rows = []
    for name, (sample, reason) in results.items():
        if sample is None:
            rows.append(Row(SECTION, f"{name}: log one event", None, "ms", note=reason))
            continue
        note = f"{calls} calls one per ms; p99 {sample.quantile(0.99):.3f} ms"
        if name == "ours" or ours is None:
            rows.append(Row(SECTION, f"{name}: log one event", sample, "ms", note=note))
            continue
        ahead = ours.quantile(0.99) < sample.quantile(0.99) and ours.median < sample.median
        rows.append(Row(SECTION, f"{name}: log one event", sample, "ms", "ours ahead", ahead, note=note))
        rows.append(Row(SECTION, f"  {name} / ours, median call", Sample.of([sample.median / ours.median]), "x"))
    return rows


if __name__ == "__main__":
    child(sys.argv[1], int(sys.argv[2]))

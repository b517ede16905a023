"""`twotier daemon`: serves the ledger's queue, one child process per run, and outlives any terminal.

It never trains and never imports torch: each run is a child `twotier-tui --headless --resume RUN`
(under torchrun when it asks for several GPUs) in the working directory and environment captured at
submit time. A crash, an out-of-memory kill or a CUDA error ends that run only, and its GPU memory
goes with its process. Everything it knows lives in the ledger, so a restarted daemon first takes up
the runs it was forced to interrupt (from their checkpoints), then goes on with the queue.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..store import LedgerReader, RunInfo, RunStatus, TwoTierError, open_ledger
from ..store.queue import DAEMON, log_path, queued, take

POLL_S = 0.5
STOP_GRACE_S = 300.0  # how long stopped runs get to finish their step and write a checkpoint
PR_SET_PDEATHSIG = 1
Log = Callable[[str], None]


@dataclass
class Launched:
    """A run's process, the GPUs it holds and the log its output goes to."""

    run_id: str
    process: subprocess.Popen[bytes] | None  # None: a run adopted from an earlier daemon, watched by pid
    pid: int
    gpus: tuple[int, ...]
    log: IO[bytes] | None

    def finished(self) -> bool:
        if self.process is not None:
            return self.process.poll() is not None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        return False


class Daemon:
    """Serves the queue of the ledger at `ledger`: `parallel` runs at a time, on the `gpus` given (none: CPU)."""

    def __init__(self, ledger: Path, *, parallel: int = 1, gpus: Sequence[int] = (), log: Log | None = None) -> None:
        if parallel < 1:
            raise TwoTierError(f"--parallel must be 1 or more, got {parallel}", exit_code=2)
        self.ledger = ledger.resolve()
        self.parallel = parallel
        self.gpus = tuple(gpus)
        self.log: Log = log or (lambda line: print(f"twotier daemon: {line}", flush=True))
        self.running: dict[str, Launched] = {}
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Stop serving: running runs are stopped cleanly (checkpoint, flush), to be taken up on the next start."""
        self._stopping.set()

    def serve(self) -> int:
        """Serve until stopped (SIGTERM, SIGINT, SIGHUP or `stop()`); returns the exit status."""
        # Create the ledger (and its folder) first: a daemon started on a fresh server, before any `twotier
        # submit`, must neither fail on the missing folder nor read a file that a first submit is creating.
        open_ledger(self.ledger).close()
        with DaemonLock(self.ledger):
            previous = {sig: signal.signal(sig, lambda *_: self.stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal is no reason to stop
            try:
                self.log(f"serving {self.ledger} ({self.parallel} at a time, {self._gpu_text()})")
                backlog = self._interrupted_runs()
                while not self._stopping.is_set():
                    self._reap()
                    backlog = self._launch_ready(backlog)
                    self._stopping.wait(POLL_S)
                self._stop_all()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        self.log("stopped")
        return 0

    def _interrupted_runs(self) -> list[RunInfo]:
        """Runs a daemon launched that did not end on their own: adopt the live ones, resume the rest first."""
        now = time.time()
        backlog = []
        with LedgerReader(self.ledger) as reader:
            for run in sorted(reader.runs(), key=lambda run: run.opened):
                if run.launcher != DAEMON:
                    continue
                stale = reader.run_status(run, now) == "stale"
                if run.status.is_live and not stale and run.pid is not None:
                    self.running[run.id] = Launched(run.id, None, run.pid, (), None)
                    self.log(f"watching run {run.id} ({run.name}), still running as pid {run.pid}")
                elif (run.status.is_live and stale) or (run.status is RunStatus.STOPPED and run.interrupted):
                    backlog.append(run)
                    self.log(f"run {run.id} ({run.name}) was interrupted at step {run.last_step}: resuming it first")
        return backlog

    def _launch_ready(self, backlog: list[RunInfo]) -> list[RunInfo]:
        """Launch what fits: interrupted runs first, then the queue in order; returns the backlog left."""
        while len(self.running) < self.parallel and not self._stopping.is_set():
            run = backlog[0] if backlog else self._next_queued()
            if run is None:
                break
            wanted = int(run.config.get("gpus", 1) or 1)
            if self.gpus and wanted > len(self.gpus):
                self._mark_failed(run, f"the run asks for {wanted} GPUs and the daemon has {len(self.gpus)}")
                backlog = backlog[1:] if backlog and run is backlog[0] else backlog
                continue
            gpus = self._free_gpus(wanted)
            if gpus is None:
                break  # wait for a run to end and free its GPUs
            if backlog and run is backlog[0]:
                backlog = backlog[1:]
            elif not self._take(run):
                continue  # cancelled meanwhile
            self._launch(run, gpus)
        return backlog

    def _next_queued(self) -> RunInfo | None:
        with LedgerReader(self.ledger) as reader:
            return next((run for run in queued(reader) if run.queue_position is not None), None)

    def _take(self, run: RunInfo) -> bool:
        ledger = open_ledger(self.ledger)
        try:
            return take(ledger, run.id)
        finally:
            ledger.close()

    def _launch(self, run: RunInfo, gpus: tuple[int, ...]) -> None:
        module = ["-m", "twotier.tui.cli", "--headless", "--resume", run.id, "--ledger", str(self.ledger)]
        command = [sys.executable, *module]
        if len(gpus) > 1:
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={len(gpus)}",
                *module[1:],
            ]
        env = {**os.environ, **run.env, "PYTHONUNBUFFERED": "1"}
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in gpus)
        path = log_path(self.ledger, run.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        log = path.open("ab")
        workdir = run.workdir if run.workdir and Path(run.workdir).is_dir() else str(self.ledger.parent)
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.running[run.id] = Launched(run.id, process, process.pid, gpus, log)
        on = f" on GPU {','.join(map(str, gpus))}" if gpus else ""
        self.log(f"started run {run.id} ({run.name}) as pid {process.pid}{on}; output in {path}")

    def _reap(self) -> None:
        for run_id, launched in list(self.running.items()):
            if not launched.finished():
                continue
            del self.running[run_id]
            if launched.log is not None:
                launched.log.close()
            code = launched.process.returncode if launched.process is not None else None
            with LedgerReader(self.ledger) as reader:
                run = reader.run(run_id)
            if run.status.is_live or run.status is RunStatus.QUEUED:
                # Died without closing its run (killed, out of memory, a crash in C), or refused it before it
                # began (a bad row, a missing model): the run's own last line says why.
                how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
                said = _last_line(log_path(self.ledger, run_id))
                self._mark_failed(
                    run, said if run.status is RunStatus.QUEUED and said else f"its process ended ({how})"
                )
                run = RunInfo(**{**run.__dict__, "status": RunStatus.FAILED})
            self.log(
                f"run {run_id} ({run.name}) ended {run.status.value} at step {run.last_step}"
                + (f" (exit status {code})" if code else "")
            )

    def _mark_failed(self, run: RunInfo, why: str) -> None:
        ledger = open_ledger(self.ledger)
        try:
            Run = ledger.tables.run.model
            Run.update(
                status=RunStatus.FAILED.value,
                ended_at=time.time(),
                queue_position=None,
                error=f"the daemon could not run it: {why}",
            ).where(Run.id == run.id).execute()
        finally:
            ledger.close()

    def _stop_all(self) -> None:
        """Each run stops the clean way (as on SIGTERM: the step ends, a checkpoint, the ledger flushed)."""
        for launched in self.running.values():
            self.log(f"stopping run {launched.run_id} (pid {launched.pid})")
            _signal_group(launched.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.running and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.2)
        for launched in self.running.values():
            self.log(f"run {launched.run_id} did not stop within {STOP_GRACE_S:.0f} s: killing it")
            _signal_group(launched.pid, signal.SIGKILL)

    def _free_gpus(self, wanted: int) -> tuple[int, ...] | None:
        """The GPUs for a run that wants `wanted` of them; () on a daemon without GPUs; None while too few are free."""
        if not self.gpus:
            return ()
        busy = {gpu for launched in self.running.values() for gpu in launched.gpus}
        free = [gpu for gpu in self.gpus if gpu not in busy]
        return tuple(free[:wanted]) if len(free) >= wanted else None

    def _gpu_text(self) -> str:
        return f"GPUs {','.join(map(str, self.gpus))}" if self.gpus else "no GPUs"


class DaemonLock:
    """One daemon per ledger: an exclusive lock on `<ledger>.daemon`, held while serving, released by the kernel
    when the process ends however it ends."""

    def __init__(self, ledger: Path) -> None:
        self.path = ledger.with_name(ledger.name + ".daemon")
        self._file: IO[str] | None = None

    def __enter__(self) -> DaemonLock:
        self._file = self.path.open("a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "?"
            self._file.close()
            raise TwoTierError(
                f"{self.path.with_suffix('')}: a daemon already serves this ledger (pid {holder}); one daemon per ledger",
                exit_code=2,
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()
        return self

    def __exit__(self, *_: object) -> None:
        if self._file is not None:
            self._file.close()


def _last_line(path: Path) -> str | None:
    """The last line a run's process wrote (its one-line error, when it refused to start)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            lines = handle.read().decode("utf-8", errors="replace").strip().splitlines()
    except OSError:
        return None
    return lines[-1].removeprefix("twotier: error: ") if lines else None


def visible_gpus() -> tuple[int, ...]:
    """The GPUs this machine shows, without importing torch: CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return tuple(int(gpu) for gpu in visible.split(",") if gpu.strip().isdigit())
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(range(sum(1 for line in listing.splitlines() if line.startswith("GPU "))))


def _die_with_parent() -> None:
    """In the child, before exec: a SIGTERM when the daemon dies, even by kill -9, so the run stops cleanly."""
    # Not on Linux, there is no prctl: the run then goes on alone, and shows stale if it dies later.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_group(pid: int, sig: int) -> None:
    """Signal a run's process group (its torchrun and workers too); one that is gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)

"""The training run the app owns when it trains in its own process; torch loads in its thread, so the
app opens first. It only starts, pauses, stops and waits for the run: what the app shows comes from the ledger."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

from ..store import RunStatus

if TYPE_CHECKING:
    from ..engine.config import Config
    from ..engine.resume import ResumePoint
    from ..engine.runner import TrainingRun


@dataclass
class EngineStarted(Message):
    run_id: str


@dataclass
class EngineEnded(Message):
    """The in-process run ended (the engine's RunEnded, as the app needs it)."""

    status: RunStatus
    error: str | None
    exit_code: int


class InProcessRun:
    """The training run this process owns. Torch is imported in its thread, so the app opens first."""

    def __init__(self, config: Config, notify: Callable[[Message], object], resume: ResumePoint | None = None) -> None:
        self.config = config
        self.resume_point = resume
        self.ended: EngineEnded | None = None
        self._notify = notify
        self._lock = threading.Lock()
        self._run: TrainingRun | None = None
        self._stop_requested = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._main, name="twotier-app-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def paused(self) -> bool:
        return self._run is not None and self._run.paused

    def pause(self) -> None:
        with self._lock:
            if self._run is not None:
                self._run.pause()

    def resume(self) -> None:
        with self._lock:
            if self._run is not None:
                self._run.resume()

    def stop(self) -> None:
        """Checkpoint, flush and mark the run stopped; before the run exists, it will not start."""
        with self._lock:
            self._stop_requested = True
            if self._run is not None:
                self._run.stop()

    def stop_and_wait(self) -> EngineEnded | None:
        """However the app ended, leave no run mid-step: stop it the clean way and wait for its end."""
        if self._thread.ident is None:
            return None
        self.stop()
        self._done.wait()
        return self.ended

    def _main(self) -> None:
        try:
            from ..engine.runner import RunEnded, TrainingRun  # torch loads here, off the UI thread

            run = TrainingRun(self.config, resume=self.resume_point)
        except Exception as err:  # noqa: BLE001 - an engine that cannot load ends the run, reported once
            self._finish(EngineEnded(RunStatus.FAILED, f"{type(err).__name__}: {err}", 1))
            return
        with self._lock:
            if self._stop_requested:
                self._finish(EngineEnded(RunStatus.STOPPED, None, 0))
                return
            self._run = run
            run.start()
        self._notify(EngineStarted(run.run_id))
        # The app shows the ledger; this queue is drained only to learn how the run ended.
        while not isinstance(message := run.events.get(), RunEnded):
            pass
        run.join()
        self._finish(EngineEnded(message.status, message.error, message.exit_code))

    def _finish(self, ended: EngineEnded) -> None:
        self.ended = ended
        self._done.set()
        self._notify(ended)

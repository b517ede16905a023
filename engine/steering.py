"""What a run has been asked to do (pause, unpause, stop), by its owner, a signal or a request in the ledger.

Both kinds of run hold one: the command line's `TrainingRun` and a user's script joined by `TwoTier(trainer)`;
`ControlCallback` reads it at each step end. It imports no torch, so its owner can hold it before training loads.
"""

from __future__ import annotations

import queue
import threading

from ..store.records import Action, ControlRequest


class Steering:
    """Thread-safe flags for one run, and which ledger requests set them (the writer marks those done)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._interrupted = False
        # Requests from the ledger, handed over by the writer's thread; and those acted on, by action.
        self._requests: queue.SimpleQueue[ControlRequest] = queue.SimpleQueue()
        self._acted: dict[str, list[int]] = {}

    def pause(self) -> None:
        """Hold the run after the current step (its status becomes paused)."""
        self._running.clear()

    def unpause(self) -> None:
        self._running.set()

    def stop(self, *, interrupted: bool = True) -> None:
        """End the run after the current step, with a checkpoint. `interrupted`: a signal or the owner stopped it,
        not a user's request (a daemon takes it up again)."""
        self._interrupted = self._interrupted or interrupted
        self._stop.set()
        self._running.set()

    def request(self, request: ControlRequest) -> None:
        """A control request from the ledger (called from the writer's thread); acted on at the next step end."""
        self._requests.put(request)

    def carried_out(self, action: str) -> tuple[int, ...]:
        """The ids of the requests for `action` acted on since the last call: the writer marks them done."""
        return tuple(self._acted.pop(action, ()))

    @property
    def stop_requested(self) -> bool:
        self._take_requests()
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        self._take_requests()
        return not self._running.is_set()

    @property
    def stopped(self) -> bool:
        """A stop was acted on; unlike `stop_requested`, takes no new request (a stop asked once training is over
        stops nothing)."""
        return self._stop.is_set()

    @property
    def interrupted(self) -> bool:
        """The stop came from a signal or the owner, not from a user's request."""
        return self._interrupted

    def _take_requests(self) -> None:
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            self._acted.setdefault(request.action.value, []).append(request.id or 0)
            if request.action is Action.PAUSE:
                self.pause()
            elif request.action is Action.UNPAUSE:
                self.unpause()
            else:
                self.stop(interrupted=False)

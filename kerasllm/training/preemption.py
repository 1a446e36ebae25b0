"""Preemption: SIGTERM, which cluster managers and preemptible VMs send some seconds
before they kill a process, noted instead of obeyed at once, so the training loop
saves a checkpoint at its next step boundary and stops cleanly."""
import signal
import threading

from absl import logging

from kerasllm.training.errors import TrainingError


class Preempted(TrainingError):
    """Training stopped on SIGTERM after saving a checkpoint; rerunning resumes it."""


class PreemptionSignal:
    """A context in which SIGTERM sets `received` instead of ending the process.

    Only the main thread can install signal handlers; elsewhere (a test runner's
    worker thread, say) the context does nothing and SIGTERM keeps its handler.
    The previous handler is put back on exit.
    """

    def __init__(self):
        self.received = False
        self._previous = None

    def _note(self, signum, frame):
        del signum, frame
        if not self.received:
            logging.warning("SIGTERM received: saving a checkpoint at the next step, "
                            "then stopping")
        self.received = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._note)
        return self

    def __exit__(self, *exc_info):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

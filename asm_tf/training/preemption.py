"""Stopping cleanly on SIGTERM or SIGINT: training saves a checkpoint at a step every worker agrees on, then stops."""

import signal
import threading

# os.EX_TEMPFAIL ("try again later"): schedulers that restart failed jobs restart an interrupted run, which resumes.
EXIT_CODE = 75


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving a checkpoint at `step`."""

    def __init__(self, reason, step, checkpoint):
        super().__init__(f"interrupted by {reason} at step {step}: saved {checkpoint}; "
                         "run the same command again to resume")
        self.reason, self.step, self.checkpoint = reason, step, checkpoint


class StopSignals:
    """While active, the first SIGTERM or SIGINT is only recorded (`received` names it); the previous handlers
    then come back, so a second signal acts as usual (SIGINT raises KeyboardInterrupt, SIGTERM terminates).

    Python runs signal handlers in the main thread between bytecodes, so a signal that arrives while a
    tf.function runs is seen when it returns. Outside the main thread nothing is installed.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                previous = signal.signal(number, self._handle)
                self._previous[number] = signal.SIG_DFL if previous is None else previous
        return self

    def __exit__(self, *exc_info):
        self._restore()

    def _handle(self, number, frame):
        self.received = signal.Signals(number).name
        self._restore()

    def _restore(self):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

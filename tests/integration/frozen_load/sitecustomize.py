"""Put on PYTHONPATH by the frozen-runner drill (tests/integration/test_faults.py): every runner process
(the ones started with a runner token) stops itself with SIGSTOP as soon as its weights start loading,
as a runner frozen by a debugger, a cgroup freezer or a hung disk would: it answers nothing at all, not
even /health. The supervisor's own process is left alone."""

import os
import signal

if os.environ.get("MULLAMA_RUNNER_TOKEN"):
    from mullama.runner.service import RunnerService

    def _frozen(self, fraction: float) -> bool:
        if fraction > 0:
            os.kill(os.getpid(), signal.SIGSTOP)
        self.progress = 0.5 * fraction
        return True

    RunnerService._load_progress = _frozen

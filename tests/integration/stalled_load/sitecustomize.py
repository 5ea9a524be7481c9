"""Put on PYTHONPATH by the stalled-load drill (tests/integration/test_faults.py): in every runner
process (the ones started with a runner token) the weights stop loading after the first progress
report, as on a hung disk. The supervisor's own process is left alone."""

import os
import threading

if os.environ.get("MULLAMA_RUNNER_TOKEN"):
    from mullama.runner.service import RunnerService

    def _stalled(self, fraction: float) -> bool:
        self.progress = 0.5 * fraction
        if fraction > 0:
            threading.Event().wait()
        return True

    RunnerService._load_progress = _stalled

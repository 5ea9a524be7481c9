"""Turns `pip install -v`'s build output into a few progress lines: "build: 37% (120/325 steps, 2m 10s)".

setup.sh pipes pip through this so that a cold build (about ten minutes on two cores) never looks like
a hang, while the full output goes to build/setup.log for when something fails. It prints a line each
5 % of the compile steps (ninja's "[n/m]"), at most every 2 s and at least every 30 s while steps
move, and passes through what pip says about the result.
"""

from __future__ import annotations

import re
import sys
import time

STEP = re.compile(r"^\s*\[(\d+)/(\d+)\]")
PASS = ("Successfully installed", "ERROR:", "error:", "mullama: ")


def main() -> int:
    t0 = time.monotonic()
    last_pct, last_t, started = -100, 0.0, False
    for line in sys.stdin:
        m = STEP.match(line)
        if m:
            done, total = int(m.group(1)), int(m.group(2))
            pct = 100 * done // max(1, total)
            now = time.monotonic()
            if not started:
                started = True
                print(f"build: compiling llama.cpp and the extension ({total} steps to do)",
                      flush=True)
            if (pct >= last_pct + 5 and now - last_t >= 2) or now - last_t >= 30 or done == total:
                elapsed = int(now - t0)
                print(f"build: {pct:3d}% ({done}/{total} steps, {elapsed // 60}m {elapsed % 60:02d}s)", flush=True)
                last_pct, last_t = pct, now
        elif line.startswith(PASS):
            print(line.rstrip()[:300], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

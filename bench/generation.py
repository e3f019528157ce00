"""Template generation: wall time of `python generate.py` and where it goes.

Each run is a fresh process (imports included), writing into a fresh temporary directory.
The phase split (import / build / write) is measured inside one more fresh process per run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PHASES = r"""
import json, sys, tempfile, time
from pathlib import Path
t0 = time.perf_counter()
sys.path.insert(0, {repo!r})
import generate
from stacks.settings import GenerationSettings
t1 = time.perf_counter()
rendered = generate.render(GenerationSettings.from_file(generate.DEFAULT_SETTINGS))
t2 = time.perf_counter()
with tempfile.TemporaryDirectory() as out:
    generate.write(rendered, Path(out))
t3 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "build": t2 - t1, "write": t3 - t2}}))
"""


def _timed_run() -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, str(REPO / "generate.py"), "--out", out], check=True,
                       capture_output=True, timeout=120)
        return time.perf_counter() - start


def measure(runs: int = 15) -> dict:
    walls = [_timed_run() for _ in range(runs)]
    phases = []
    for _ in range(runs):
        result = subprocess.run([sys.executable, "-c", PHASES.format(repo=str(REPO))], check=True,
                                capture_output=True, text=True, timeout=120)
        phases.append(json.loads(result.stdout))
    split = {name: statistics.median(p[name] for p in phases) for name in ("import", "build", "write")}
    total = sum(split.values())
    return {
        "runs": runs,
        "wall_median_s": statistics.median(walls),
        "wall_min_s": min(walls),
        "phase_median_s": split,
        "phase_share": {name: value / total for name, value in split.items()},
    }


def timed_command(command: list[str], runs: int = 3) -> dict:
    """Median and min wall time of a whole command (e.g. the local gate)."""
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800)
        walls.append(time.perf_counter() - start)
        if result.returncode != 0:
            return {"runs": len(walls), "error": f"exit {result.returncode}: "
                    f"{(result.stdout + result.stderr).strip().splitlines()[-1:]}"}
    return {"runs": runs, "wall_median_s": statistics.median(walls), "wall_min_s": min(walls)}

"""`make bench`: every benchmark, one table on stdout, the same figures in bench/results/latest.json.

    python -m bench.run [--quick]

--quick: fewer generation runs and only the 5 ms/token gateway matrix (a smoke run).
Not part of `make test`: figures are measured, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from bench import gateway, generation

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "latest.json"
BIN = Path(sys.executable).parent


def gate_commands() -> dict[str, list[str]]:
    commands = {
        "generate + cfn-lint": ["sh", "-c", f"{sys.executable} generate.py && {BIN}/cfn-lint"],
    }
    if (REPO / "tools" / "security_gate.py").is_file():
        commands["generate + cfn-lint + security gate"] = [
            "sh", "-c", f"{sys.executable} generate.py && {BIN}/cfn-lint && "
                        f"{sys.executable} -m tools.security_gate"]
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)

    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()}}
    report["generation"] = generation.measure(runs=10 if args.quick else 15)
    report["gate"] = {name: generation.timed_command(cmd, runs=1 if args.quick else 3)
                      for name, cmd in gate_commands().items()}
    report["gateway_setup"] = gateway.describe()
    report["gateway"] = gateway.measure(delays_ms=(5,) if args.quick else (0, 5))

    g = report["generation"]
    print("== Generation (fresh process each run)")
    print(f"python generate.py: median {g['wall_median_s'] * 1000:.0f} ms, min "
          f"{g['wall_min_s'] * 1000:.0f} ms over {g['runs']} runs; share: " + ", ".join(
              f"{k} {v:.0%}" for k, v in g["phase_share"].items()))
    for name, result in report["gate"].items():
        if "error" in result:
            print(f"{name}: failed ({result['error']})")
        else:
            print(f"{name}: median {result['wall_median_s']:.1f} s, min "
                  f"{result['wall_min_s']:.1f} s over {result['runs']} run(s)")
    print()
    print("== Gateway overhead; " + report["gateway_setup"])
    header = (f"{'ms/tok':>6} {'route':<7} {'conc':>4} | {'req/s d':>8} {'req/s g':>8} "
              f"{'tok/s d':>8} {'tok/s g':>8} {'ratio':>5} | {'ttft50 d':>8} {'+ttft50':>7} "
              f"{'+ttft99':>7} | {'tot50 g':>7} {'tot99 g':>7} | {'cpu ms/req':>10} {'RSS MB':>6}")
    print(header)
    print("-" * len(header))
    for row in report["gateway"]:
        d, gw = row["direct"], row["gateway"]
        print(f"{row['delay_ms']:>6} {row['route']:<7} {row['concurrency']:>4} | "
              f"{d['requests_per_s']:>8.1f} {gw['requests_per_s']:>8.1f} "
              f"{d['tokens_per_s']:>8.0f} {gw['tokens_per_s']:>8.0f} "
              f"{row['throughput_ratio']:>5.2f} | {d['ttft_p50_ms']:>8.1f} "
              f"{row['added_ttft_p50_ms']:>7.1f} {row['added_ttft_p99_ms']:>7.1f} | "
              f"{gw['total_p50_ms']:>7.1f} {gw['total_p99_ms']:>7.1f} | "
              f"{row['gateway_cpu_ms_per_request']:>10.2f} {row['gateway_peak_rss_mb']:>6.1f}")
        if gw["errors"] or d["errors"]:
            print(f"       errors: direct {d['errors']:.0f}, gateway {gw['errors']:.0f}")
    print("d = the double alone, g = through the gateway; ratio = gateway tok/s / direct tok/s; "
          "+ttft = added time to first token (ms)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    tmp.replace(RESULTS)
    print(f"\nwrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: every benchmark, one table on stdout, the same figures in bench/results/latest.json.

    python -m bench.run [--quick] [--gateway-only] [--real-model-only] [--profile]
    python -m bench.run --hotpath [--rounds N] [--tree PATH] [--label NAME] [--quick]

--quick: fewer generation runs, one round and fewer requests per gateway run, and only the
5 ms/token gateway matrix (a smoke run). --gateway-only: skip the generation benchmark.
--real-model-only: only the real-model row (bench/realmodel.py: llama.cpp with gemma3-270m, not
Ollama), printed in the gateway table's columns; about 1.5 minutes, 20 s with --quick.
--profile: also sample the gateway with py-spy during one extra (uncounted) run per route at the
highest concurrency; collapsed stacks go to bench/results/, the top frames are printed.
--hotpath: only the hot-path comparison (bench/hotpath.py: direct, a bare passthrough and the
gateway, interleaved, at 16 and 64 paced streams on both APIs), written to
bench/results/hotpath-NAME.json; --tree measures the gateway of another checkout (the code as
it was, say) in the same conditions. About 3 minutes with 3 rounds.
Not part of `make test`: figures are measured, never asserted; the targets are printed as
met or missed, for the reader.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from bench import gateway, generation, hotpath, realmodel

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "latest.json"
BIN = Path(sys.executable).parent


def gate_commands() -> dict[str, list[str]]:
    # `generate.py --check` renders every template and compares it with templates/ without
    # writing: the benchmark never writes into the tree (others may be editing stacks/).
    generate = f"{sys.executable} generate.py --check"
    commands = {
        "generate --check + cfn-lint": ["sh", "-c", f"{generate} && {BIN}/cfn-lint"],
    }
    if (REPO / "tools" / "security_gate" / "__init__.py").is_file():
        commands["generate --check + cfn-lint + security gate"] = [
            "sh", "-c", f"{generate} && {BIN}/cfn-lint && {sys.executable} -m tools.security_gate"]
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gateway-only", action="store_true")
    parser.add_argument("--real-model-only", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--hotpath", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="--hotpath: rounds (3 or more)")
    parser.add_argument("--tree", type=Path, default=None,
                        help="--hotpath: the checkout whose gateway is measured")
    parser.add_argument("--label", default="latest", help="--hotpath: the results file's name")
    args = parser.parse_args(argv)
    if args.hotpath:
        if args.rounds < 1:
            parser.error("--rounds must be 1 or more (3 or more for medians worth the name)")
        if args.tree is not None and not (args.tree / "app" / "main.py").is_file():
            parser.error(f"--tree {args.tree}: no app/main.py there; give a checkout's root")
        result = hotpath.measure(rounds=args.rounds, tree=args.tree, quick=args.quick)
        print("\n".join(hotpath.report_lines(result)))
        out = RESULTS.parent / f"hotpath-{args.label}.json"
        hotpath.write(result, out)
        print(f"\nwrote {out.relative_to(REPO)}")
        return 0
    if args.real_model_only and args.profile:
        parser.error("--profile samples the double's runs; it does not go with --real-model-only")

    report: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "platform": platform.platform()}}
    if not (args.gateway_only or args.real_model_only):
        report["generation"] = generation.measure(runs=10 if args.quick else 15)
        report["gate"] = {name: generation.timed_command(cmd, runs=1 if args.quick else 3)
                          for name, cmd in gate_commands().items()}
    if not args.real_model_only:
        report["gateway_setup"] = gateway.describe()
        report["gateway"] = gateway.measure(
            delays_ms=(5,) if args.quick else (0, 5),
            rounds=1 if args.quick else 2,
            quick=args.quick,
            profile_dir=RESULTS.parent if args.profile else None,
        )
    report["real_model"] = realmodel.measure(rounds=1 if args.quick else 3,
                                             requests=2 if args.quick else realmodel.REQUESTS)
    if "generation" in report:
        print_generation(report)
    print_gateway(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    tmp.replace(RESULTS)
    print(f"\nwrote {RESULTS.relative_to(REPO)}")
    return 0


def print_generation(report: dict) -> None:
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


# (delay ms, concurrency): minimum throughput ratio, maximum added ttft p50 / p99 (ms)
TARGETS = {(5, 16): (0.95, 3.0, None), (5, 64): (0.85, 15.0, 120.0)}
RSS_TARGET_MB = 150


def print_gateway(report: dict) -> None:
    rows = report.get("gateway", [])
    real = report["real_model"]
    setup = report.get("gateway_setup", f"only the real-model row ({real['upstream']})")
    print("== Gateway overhead; " + setup)
    header = (f"{'ms/tok':>6} {'route':<6} {'conc':>4} | {'req/s d':>7} {'req/s g':>7} | "
              f"{'tok/s d':>7} {'tok/s g':>7} {'ratio':>5} {'(rounds)':<9} | "
              f"{'ttft50 d':>8} {'+':>5} {'ttft99 d':>8} {'+':>5} | "
              f"{'tot50 d':>7} {'g':>6} {'tot99 d':>7} {'g':>6}")
    print(header)
    print("-" * len(header))
    for row in rows:
        d, gw = row["direct"], row["gateway"]
        spread = row["throughput_ratio_rounds"]
        rounds = f"{min(spread):.2f}-{max(spread):.2f}" if len(spread) > 1 else ""
        print(f"{row['delay_ms']:>6} {row['route']:<6} {row['concurrency']:>4} | "
              f"{d['requests_per_s']:>7.1f} {gw['requests_per_s']:>7.1f} | "
              f"{d['tokens_per_s']:>7.0f} {gw['tokens_per_s']:>7.0f} "
              f"{row['throughput_ratio']:>5.2f} {rounds:<9} | "
              f"{d['ttft_p50_ms']:>8.1f} {row['added_ttft_p50_ms']:>+5.1f} "
              f"{d['ttft_p99_ms']:>8.1f} {row['added_ttft_p99_ms']:>+5.1f} | "
              f"{d['total_p50_ms']:>7.1f} {gw['total_p50_ms']:>6.1f} "
              f"{d['total_p99_ms']:>7.1f} {gw['total_p99_ms']:>6.1f}")
        if gw["errors"] or d["errors"]:
            print(f"       errors: direct {d['errors']:.0f}, gateway {gw['errors']:.0f}")
    print(f"-- real model, {real['upstream']}:")
    print(realmodel.row_line(real))
    print("d = the upstream alone (the double; llama.cpp in the gemma3 row), g = through the "
          "gateway (means over the runs; medians in the gemma3 row); ratio = gateway "
          "tok/s / direct tok/s, (rounds) = its range over the rounds of direct, gateway, "
          "gateway, direct; ttft = time to first token, tot = total latency (ms, p50/p99), "
          "+ = added by the gateway")
    for line in realmodel.notes(real):
        print(line)
    print()
    if not rows:
        return
    header = (f"{'ms/tok':>6} {'route':<6} {'conc':>4} | {'gateway CPU ms/req':>18} "
              f"{'peak RSS MB':>11} | {'load gen CPU ms/req d':>21} {'g':>5} | "
              f"{'double CPU ms/req d':>19} {'g':>5} | {'other cores':>11}")
    print(header)
    print("-" * len(header))
    for row in rows:
        d, gw = row["direct"], row["gateway"]
        print(f"{row['delay_ms']:>6} {row['route']:<6} {row['concurrency']:>4} | "
              f"{row['gateway_cpu_ms_per_request']:>18.2f} {row['gateway_peak_rss_mb']:>11.0f} | "
              f"{d['client_cpu_ms_per_request']:>21.2f} {gw['client_cpu_ms_per_request']:>5.2f} | "
              f"{d['double_cpu_ms_per_request']:>19.2f} {gw['double_cpu_ms_per_request']:>5.2f} | "
              f"{row['other_cpu_cores']:>11.2f}")
    print("CPU per request from /proc (the gateway's in the gateway runs); peak RSS = the "
          "gateway's VmHWM so far; other cores = CPU the rest of the machine used during the "
          "runs (other jobs: noise, and a reason to distrust a row)")
    print()
    print("Targets (5 ms/token, 20 tokens):")
    for row in rows:
        target = TARGETS.get((row["delay_ms"], row["concurrency"]))
        if target is None:
            continue
        ratio, ttft50, ttft99 = target
        checks = [(f"ratio {row['throughput_ratio']:.2f} >= {ratio}",
                   row["throughput_ratio"] >= ratio),
                  (f"+ttft p50 {row['added_ttft_p50_ms']:.1f} <= {ttft50:g} ms",
                   row["added_ttft_p50_ms"] <= ttft50)]
        if ttft99 is not None:
            checks.append((f"+ttft p99 {row['added_ttft_p99_ms']:.1f} <= {ttft99:g} ms",
                           row["added_ttft_p99_ms"] <= ttft99))
        print(f"  {row['route']:<6} {row['concurrency']:>2} streams: " + "; ".join(
            f"{text} {'met' if ok else 'MISSED'}" for text, ok in checks))
    peak = max(row["gateway_peak_rss_mb"] for row in rows)
    print(f"  gateway peak RSS {peak:.0f} MB < {RSS_TARGET_MB} MB "
          f"{'met' if peak < RSS_TARGET_MB else 'MISSED'}")
    for row in rows:
        if "profile" in row:
            prof = row["profile"]
            print(f"\nProfile: gateway under {row['route']} {row['concurrency']} streams, "
                  f"{row['delay_ms']} ms/token ({prof['samples']} samples, {prof['file']})")
            print("  self:      " + "; ".join(f"{share:.0%} {frame}"
                                              for frame, share in prof["self"][:8]))
            print("  inclusive: " + "; ".join(f"{share:.0%} {frame}"
                                              for frame, share in prof["inclusive"][:8]))


if __name__ == "__main__":
    sys.exit(main())

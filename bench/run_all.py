"""``make bench``: the CPU benchmarks of bench/, one after another, each writing bench/results/<name>.json.

    .venv/bin/python bench/run_all.py [--only NAME[,NAME...]]

Runs every script in :data:`BENCHMARKS` with its defaults (the TensorRT one skips with its reason
where there is no GPU; the soak is left out: it runs for minutes, see docs/benchmarks.md). Stops
at the first failure and exits with its status.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("bench_default_model", "bench_model", "bench_adaptation", "bench_outputs", "bench_prompt_engines",
              "bench_prompt_startup", "bench_service", "bench_node", "bench_tensorrt")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated benchmark names (default: all)")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    for name in names:
        print(f"== {name}", flush=True)
        start = time.monotonic()
        rc = subprocess.call([sys.executable, str(HERE / f"{name}.py")])
        print(f"== {name}: exit {rc} in {time.monotonic() - start:.0f} s", flush=True)
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: every benchmark, each writing its own table into the README."""

from __future__ import annotations

import importlib
import sys
import time

BENCHMARKS = ["bench_checkpoint", "bench_dispatch", "bench_recovery", "bench_inference", "bench_fairness",
              "bench_scheduler", "bench_provisioner", "bench_scale", "bench_backlog", "bench_tenant_api", "bench_drain",
              "bench_outages"]


def main(names: list[str]) -> int:
    for name in names or BENCHMARKS:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        importlib.import_module(f"tests.benchmarks.{name}").main()
        print(f"== {name} done in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

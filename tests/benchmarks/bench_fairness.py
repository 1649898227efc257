"""Fair share past this machine, by simulation (issue #8): the scheduling policy against FIFO on the
same traces, at 10,000 tenants, 100,000 requests and 1,000 workers. See sim_fairness for the model."""

from __future__ import annotations

import os
import time

from tenantml.domain.scheduling import Policy
from tests.benchmarks.report import row, table, write_section
from tests.benchmarks.sim_fairness import Outcome, Trace, fair_share, fifo, make_trace, percentile, simulate

TENANTS = int(os.environ.get("BENCH_FAIRNESS_TENANTS", "10000"))
REQUESTS = int(os.environ.get("BENCH_FAIRNESS_REQUESTS", "100000"))
WORKERS = int(os.environ.get("BENCH_FAIRNESS_WORKERS", "1000"))
BURST_S, STEADY_S = 600.0, 9_000.0  # arrival windows: the whole backlog in 10 minutes, or over about the makespan
FIFO = "FIFO, same trace"
COUNT_ONLY = "fair share, running count only"


def run(label: str, trace: Trace, count_only: bool) -> dict[str, Outcome]:
    runs = {"fair": fair_share(Policy()), "fifo": fifo}
    if count_only:
        runs["count"] = fair_share(Policy(), attained=False)
    outcomes = {}
    for name, decide in runs.items():
        started = time.monotonic()
        outcomes[name] = simulate(trace, decide)
        print(f"{label}, {name}: {time.monotonic() - started:.0f} s", flush=True)
    return outcomes


def decision_rows(label: str, ours: Outcome, peer: Outcome) -> list[list[str]]:
    busiest = max(range(len(ours.waiting_per_tick)), key=ours.waiting_per_tick.__getitem__)
    busiest_peer = max(range(len(peer.waiting_per_tick)), key=peer.waiting_per_tick.__getitem__)
    return [
        row(f"{label}: decision time per tick, p50", percentile(ours.decision_s, 50) * 1e3, "ms", FIFO,
            percentile(peer.decision_s, 50) * 1e3, False),
        row(f"{label}: decision time per tick, p99", percentile(ours.decision_s, 99) * 1e3, "ms", FIFO,
            percentile(peer.decision_s, 99) * 1e3, False),
        row(f"{label}: decision time, tick with the most waiting ({ours.waiting_per_tick[busiest]:,})",
            ours.decision_s[busiest] * 1e3, "ms", FIFO, peer.decision_s[busiest_peer] * 1e3, False),
    ]


def fairness_rows(label: str, ours: Outcome, peer: Outcome, peer_name: str) -> list[list[str]]:
    return [
        row(f"{label}: Jain's index of worker-time / fair share", ours.jain, "", peer_name, peer.jain, True),
        row(f"{label}: small tenants' p95 wait", percentile(ours.small_waits_s, 95), "s", peer_name,
            percentile(peer.small_waits_s, 95), False),
        row(f"{label}: small tenants' median wait", percentile(ours.small_waits_s, 50), "s", peer_name,
            percentile(peer.small_waits_s, 50), False),
    ]


def summary(label: str, trace: Trace, outcomes: dict[str, Outcome]) -> list[list[str]]:
    ours, peer = outcomes["fair"], outcomes["fifo"]
    rows = decision_rows(label, ours, peer) + fairness_rows(label, ours, peer, FIFO)
    rows.append(row(f"{label}: utilisation while requests wait", ours.utilisation * 100, "%", FIFO,
                    peer.utilisation * 100, True))
    if "count" in outcomes:
        rows += fairness_rows(label, ours, outcomes["count"], COUNT_ONLY)[:2]
    return rows


def main() -> None:
    traces = {
        "burst": make_trace(TENANTS, REQUESTS, WORKERS, arrival_window_s=BURST_S),
        "steady": make_trace(TENANTS, REQUESTS, WORKERS, arrival_window_s=STEADY_S),
    }
    results = {label: run(label, trace, count_only=label == "burst") for label, trace in traces.items()}
    rows = [line for label, trace in traces.items() for line in summary(label, trace, results[label])]
    burst, steady = results["burst"]["fair"], results["steady"]["fair"]
    small = traces["burst"].small
    body = table(rows) + (
        f"\n\n`python -m tests.benchmarks bench_fairness`: the policy of `tenantml/domain/scheduling.py` (weighted "
        f"fair share, preemption after 30 s) and FIFO (today's order) on one simulated fleet of {WORKERS:,} workers "
        f"of one class, {TENANTS:,} tenants and {REQUESTS:,} requests, ticking every 5 s; both policies get the same "
        "trace and the same inputs per tick. Backlogs are Pareto(1.2) per tenant, each queued as one burst; durations "
        "lognormal (median 60 s, sigma 1, 5 s to 1 h); seed 8. `burst`: every tenant queues within "
        f"{BURST_S:.0f} s (at most {max(burst.waiting_per_tick):,} waiting at once); `steady`: within "
        f"{STEADY_S:,.0f} s, about the time the fleet needs for the work. Small tenants: the {len(small):,} whose "
        "backlog is at most the median; a wait is a request's queueing until its first start. Jain's index is over "
        "each tenant's worker-seconds divided by its max-min fair share of the fleet, both summed over the ticks at "
        "which it waited or ran (1.0: everyone got its share). Utilisation counts busy workers only while a request "
        "waited; the rest is the tick (a slot freed between ticks waits for the next). A preemption hands back in 2 s "
        f"and redoes 2.5 s: {burst.preemptions:,} preemptions in `burst`, {steady.preemptions:,} in `steady`. "
        f"'{COUNT_ONLY}' breaks ties between tenants running as much by the oldest queued request instead of by the "
        "worker-time each had since its backlog began: with more waiting tenants than workers, the tenants that came "
        "first then keep winning the freed slots."
    )
    write_section("fairness", "Fair share past this machine, by simulation", body)
    print(body)


if __name__ == "__main__":
    main()

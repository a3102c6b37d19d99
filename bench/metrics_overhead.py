"""What the delivery metrics cost per digest: the timers and updates `deliver_digest` makes
for one digest (rank and render timed, one send observed: its histogram, its reply class, the
sent count), with nothing inside them.

Run from the project root:

    .venv/bin/python -m bench.metrics_overhead [--digests 100000]

Two modes: in this process, where prometheus_client keeps each value in memory behind a lock
(as in `paperwire digest run`), and in a child process with PROMETHEUS_MULTIPROC_DIR set, where
each update is also written to a memory-mapped file (as in a worker's pool, which the worker's
metrics port reads). The mode is chosen when prometheus_client is imported, hence the child.

Each figure is CPU time (`time.process_time`) per digest, the best of five rounds, less the same
loop's clock reads without the metrics (what timing a stage costs anyway).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

ROUNDS = 5


def per_digest_seconds(digests: int) -> tuple[float, float]:
    """CPU seconds per digest of the metrics' sequence and of its bare clock reads."""
    from service.observability import sending

    def instrumented() -> None:
        for _ in range(digests):
            with sending.RANK_SECONDS.time():
                pass
            with sending.RENDER_SECONDS.time():
                pass
            sending.observe_send(time.perf_counter(), None)

    def bare() -> None:
        for _ in range(digests):
            for _clock_reads in range(3):
                time.perf_counter()
                time.perf_counter()

    return _best(instrumented) / digests, _best(bare) / digests


def _best(loop: Callable[[], None]) -> float:
    times = []
    for _ in range(ROUNDS):
        started = time.process_time()
        loop()
        times.append(time.process_time() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--digests", type=int, default=100_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    digests = max(1000, min(args.digests, 2_000_000))  # bounded: a benchmark
    if args.child:
        metrics, bare = per_digest_seconds(digests)
        print(f"{metrics} {bare}")
        return
    rows = [("in-process values (digest run)", *per_digest_seconds(digests))]
    with tempfile.TemporaryDirectory() as folder:
        child = subprocess.run(
            [sys.executable, "-m", "bench.metrics_overhead", "--child", "--digests", str(digests)],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder},
            capture_output=True,
            text=True,
            check=True,
        )
    metrics, bare = (float(word) for word in child.stdout.split())
    rows.append(("multiprocess files (a worker's pool)", metrics, bare))
    print(f"delivery metrics per digest, CPU, best of {ROUNDS} rounds of {digests} digests:")
    for label, metrics, bare in rows:
        overhead, total = 1e6 * (metrics - bare), 1e6 * metrics
        print(f"  {label}: {overhead:.1f} µs ({total:.1f} µs with the clock reads)")


if __name__ == "__main__":
    main()

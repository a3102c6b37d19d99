"""What the ledger's write before each message costs on PostgreSQL: the data start with the
previous issue's outcome as one statement in autocommit mode, against the same two writes as a
transaction (BEGIN, two UPDATEs, COMMIT), which SQLite and a ledger with more writes pending
still use.

Run from the project root, with PostgreSQL on 127.0.0.1:5432 (a database of its own is created
and dropped):

    .venv/bin/python -m bench.ledger_writes [--messages 3000]

Each round plans and claims `--messages` issues, then for each one marks its data started and
records it sent, as a sender does; the rounds of the two ways alternate, so a slow minute of
the machine falls on both. Printed per message: this process's CPU, the server backend's CPU
(from /proc) and the wall time; the best of the rounds.
"""

import argparse
import os
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Connection

from bench.daily_run.harness import bench_database, seed_day
from service.delivery.planning import plan_day
from service.models import IssueItem
from service.store import Ledger, Store

ROUNDS = 3
# Bounds: a benchmark, not a load test.
MAX_MESSAGES = 20_000
LEASE = timedelta(hours=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    count = max(1, min(parser.parse_args().messages, MAX_MESSAGES))
    paper_ids = [f"2601.{number:05d}" for number in range(10)]
    items = [
        IssueItem(paper_id=paper_id, why="Matches “diffusion models”") for paper_id in paper_ids
    ]
    best: dict[bool, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as folder, bench_database("postgresql", Path(folder)) as url:
        store = Store(url)
        store.upgrade()
        now = datetime.now(UTC)
        seed_day(
            store,
            papers=10,
            subscribers=count,
            profile_subscribers=0,
            profile_weekday=0,
            seed=7,
            now=now,
        )
        for round_number in range(ROUNDS):
            for one_statement in (True, False):
                # A day of its own each time, so every round claims fresh issues.
                day = now.date() + timedelta(days=2 * round_number + one_statement)
                figures = _time_round(store, day, paper_ids, items, one_statement=one_statement)
                best[one_statement] = min(best.get(one_statement, figures), figures)
        store.close()
    print(f"ledger writes before each of {count} messages, PostgreSQL, best of {ROUNDS} rounds:")
    for one_statement, label in ((True, "one statement"), (False, "transaction")):
        cpu, backend, wall = best[one_statement]
        print(
            f"  {label:<14} CPU {cpu:.3f} ms, PostgreSQL backend CPU {backend:.3f} ms, "
            f"wall {wall:.3f} ms per message"
        )


def _time_round(
    store: Store,
    day: date,
    paper_ids: list[str],
    items: list[IssueItem],
    *,
    one_statement: bool,
) -> tuple[float, float, float]:
    """(this process's CPU, the backend's CPU, wall) per message, in milliseconds."""
    now = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    plan_day(store, day, now=now)
    ids = [subscriber.id for subscriber in store.list_subscribers()]
    with store.engine.connect() as connection:
        backend = _backend_pid(connection)
        # Both ways are exercised by tests/store/test_store.py.
        ledger = Ledger(connection, one_statement_starts=one_statement)
        claimed, _ = ledger.claim_first_tries(day, ids, now=now, lease=LEASE)
        cpu, backend_cpu, wall = time.process_time(), _cpu_seconds(backend), time.perf_counter()
        for subscriber_id in ids:
            attempt = claimed[subscriber_id]
            ledger.mark_data_started(
                subscriber_id, day, now=now, paper_ids=paper_ids, items=items, attempt=attempt
            )
            ledger.record_sent(
                subscriber_id,
                day,
                message_id=f"<{subscriber_id}@bench>",
                paper_ids=paper_ids,
                items=items,
                now=now,
                attempt=attempt,
            )
        ledger.flush()
        cpu = time.process_time() - cpu
        backend_cpu = _cpu_seconds(backend) - backend_cpu
        wall = time.perf_counter() - wall
    per_message = 1000 / len(ids)
    return cpu * per_message, backend_cpu * per_message, wall * per_message


def _backend_pid(connection: Connection) -> int:
    pid: int = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    connection.commit()
    return pid


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a local process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()

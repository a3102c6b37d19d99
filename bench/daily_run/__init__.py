"""A whole day through Celery workers on Redis, PostgreSQL and SMTP: throughput, CPU, memory.

Run from the project root (needs the test extras: aiosmtpd, and the service helpers of the tests):

    .venv/bin/python -m bench.daily_run --subscribers 10000 --papers 500 \
        [--workers-concurrency 2] [--database postgresql|sqlite] [--history-days 30]
    .venv/bin/python -m bench.daily_run --plan-only --subscribers 1000000

Everything runs on 127.0.0.1 and in a temporary folder, and is removed at the end, on error and
on Ctrl-C too: a private redis-server; a fresh PostgreSQL database `paperwire_bench_<random>` on
127.0.0.1:5432 (user postgres, trust auth), dropped afterwards (or a SQLite file with
--database sqlite); a counting SMTP sink in a process of its own (bench/counting_sink.py);
and the Celery worker(s).

The day: the 375 sample papers plus re-id'd copies up to --papers, first seen an hour ago, and
N confirmed subscribers due this hour (time zone UTC, delivery hour = the current UTC hour)
with 1-3 interest phrases of 1-3 content words of the sample titles and varied trending weights,
all drawn from a fixed seed. This process plans and enqueues the day as beat's
`enqueue-due-digests` would (`plan_due_issues` + `enqueue_batches`), and the workers deliver it;
the run ends when no ledger row is planned, sending or retry.

Figures: wall time and digests/s (from the ledger's own timestamps); plan time; rank, render and
serialize means measured in this process on a sample; CPU per digest of every process on the
machine that takes part (worker main process and pool, PostgreSQL, Redis, the sink, this
process) and of everything else, from /proc; the workers' peak RSS; the raw limit (one
connection sending the same pre-serialized digest over and over to the same sink with
aiosmtplib) and the ratio to it; what the sink counted; and where a delivery task's time goes:
its body run in this process on batches of extra subscribers, with the CPU and wall time of
each stage (DB calls by Store method, rank, render, serialize, SMTP, garbage collection), then
under cProfile for the own time of each package.

With --history-days N the store first gets N earlier days written in bulk (`history`): each
day's new papers, a sent ledger row of 10 of them per subscriber, votes and a few bounces; the
day measured is then day N+1, and before it the same day runs on a fresh store of its own, so
the report ends with `day N+1 / day 1 rate = X` and the same ratio for the plan time.

With --plan-only (`plan_only`, up to a million subscribers) nothing is sent and no worker
starts: the day is planned and enqueued as beat would, and the report gives the time of each,
this process's peak RSS and Redis's memory, stopping itself at --plan-deadline seconds.

The machine is shared: before each measurement the script waits (up to --wait-quiet seconds)
for other work to stop, and the report shows how busy the machine was with other work.

The modules, in the order a run uses them: `__main__` (options and the run's steps), `harness`
(Redis, the database, the sink, the workers, the day's papers and subscribers), `machine` (CPU
and memory from /proc), `stages` (stage costs in this process and the task body's profile),
`day` (the day through the workers), `raw_limit`, and `report` (the printed figures); `history`
and `plan_only` for the options of those names.
"""

"""The delivery pipeline's metrics: digests sent, the time of each send, batch, rank and render,
and the relay's replies by class.

Updated by `service.delivery.pipeline` in whichever process sends. A worker sums its pool
processes' figures with prometheus_client's multiprocess mode and serves them on its own port
(`workers.observability`); `paperwire digest run` keeps them in its process, unread. The
metrics live in a registry of their own, so the web app's `/metrics` never shows them at 0.

Each digest costs two clock reads per timed stage and one update per metric (microseconds,
measured in README's "Metrics"): next to the milliseconds of ranking and rendering a digest.
"""

from time import perf_counter

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

from service.mail.sending import DeliveryError

disable_created_metrics()  # type: ignore[no-untyped-call]

SENDING_REGISTRY = CollectorRegistry()

# Ranking and rendering take milliseconds; a send waits on the relay.
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A batch is up to PAPERWIRE_BATCH_SIZE digests over one connection, under the task time limit.
BATCH_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0)

DIGESTS_SENT = Counter(
    "paperwire_digests_sent",
    "Digest emails the relay (or the outbox folder) accepted.",
    registry=SENDING_REGISTRY,
)
SEND_SECONDS = Histogram(
    "paperwire_send_duration_seconds",
    "Time to hand one digest email to the relay, whatever the outcome.",
    buckets=SEND_BUCKETS,
    registry=SENDING_REGISTRY,
)
BATCH_SECONDS = Histogram(
    "paperwire_batch_duration_seconds",
    "Time to deliver one batch of issues, from its claims to its last outcome.",
    buckets=BATCH_BUCKETS,
    registry=SENDING_REGISTRY,
)
SMTP_REPLIES = Counter(
    "paperwire_smtp_replies",
    "The relay's answers to digest emails by class (none: the connection failed or ended "
    "before an answer; the outbox folder answers 2xx).",
    ["class"],
    registry=SENDING_REGISTRY,
)
RANK_SECONDS = Histogram(
    "paperwire_rank_seconds",
    "Time to rank the papers of one digest (every section).",
    buckets=STAGE_BUCKETS,
    registry=SENDING_REGISTRY,
)
RENDER_SECONDS = Histogram(
    "paperwire_render_seconds",
    "Time to render one digest email, size cap included.",
    buckets=STAGE_BUCKETS,
    registry=SENDING_REGISTRY,
)
REPLY_CLASSES = ("2xx", "4xx", "5xx", "none")
for _reply_class in REPLY_CLASSES:
    SMTP_REPLIES.labels(_reply_class)


def reply_class(error: DeliveryError | None) -> str:
    """The class of the relay's answer: 2xx when it took the message."""
    if error is None:
        return "2xx"
    code = error.smtp_code
    if code is not None and 400 <= code < 600:
        return f"{code // 100}xx"
    return "none"


def observe_send(started: float, error: DeliveryError | None) -> None:
    """One message handed over (`error` None) or not, `started` at that `perf_counter()`."""
    SEND_SECONDS.observe(perf_counter() - started)
    SMTP_REPLIES.labels(reply_class(error)).inc()
    if error is None:
        DIGESTS_SENT.inc()

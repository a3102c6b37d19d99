"""The web app's metrics and those of the subscription functions behind it: requests by route
template, signups, confirmations, unsubscribes and feedback votes.

Counted in the process where they happen, in prometheus_client's default registry, which the
web app's `/metrics` exposes (`service.web.metrics_page`). An unsubscribe by mail happens in
`paperwire inbound`, and one by an operator in the CLI: those processes expose no endpoint, and
`paperwire_unsubscribes_today`, read from the store at scrape time, counts every channel.
"""

from prometheus_client import Counter, Histogram, disable_created_metrics

from service.models import UnsubscribeChannel, Vote

# `_created` series double every counter for a figure no panel or alert reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

HTTP_REQUESTS = Counter(
    "paperwire_http_requests",
    "Requests answered by the web app, by route template (never the path), method and status.",
    ["route", "method", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "paperwire_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template and method.",
    ["route", "method"],
)
SIGNUPS = Counter(
    "paperwire_signups",
    "Signup requests that stored a pending signup and queued its confirmation email.",
)
CONFIRMATIONS = Counter("paperwire_confirmations", "Signups confirmed from their link.")
UNSUBSCRIBES = Counter(
    "paperwire_unsubscribes",
    "Subscribers unsubscribed in this process, by the channel they used.",
    ["channel"],
)
FEEDBACK_VOTES = Counter(
    "paperwire_feedback_votes",
    "Readers' verdicts on papers that changed their vote (none: a vote taken back).",
    ["vote"],
)
NO_VOTE = "none"

# Every label value listed from the start, at 0: a rate over a series that appears only with
# its first event misses that event.
for _channel in UnsubscribeChannel:
    UNSUBSCRIBES.labels(_channel.value)
for _vote in (*(vote.value for vote in Vote), NO_VOTE):
    FEEDBACK_VOTES.labels(_vote)


def count_unsubscribe(channel: UnsubscribeChannel) -> None:
    UNSUBSCRIBES.labels(channel.value).inc()


def count_feedback_vote(vote: Vote | None) -> None:
    FEEDBACK_VOTES.labels(NO_VOTE if vote is None else vote.value).inc()

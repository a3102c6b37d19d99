"""How long the delivery ledger keeps issues: rows of issues older than the retention are
deleted, a few thousand per transaction so that sending never waits long on them. What goes
with them: those issues in the archive, the feed and `stats`. What stays: every issue of the
last `SHORTEST_LEDGER_RETENTION_DAYS`, which the reading history (never the same paper twice)
and the sweep read."""

from collections.abc import Callable
from datetime import date, timedelta

from service.errors import InvalidInput
from service.models import SHORTEST_LEDGER_RETENTION_DAYS
from service.store import Store

PRUNED_PER_TRANSACTION = 5_000


def retention_cutoff(today: date, retention_days: int) -> date | None:
    """The first issue date kept; None when every issue is kept (retention 0)."""
    if retention_days == 0:
        return None
    return today - timedelta(days=retention_days)


def check_cutoff(before: date, *, today: date) -> None:
    """Refuse a cut-off that would delete issues the delivery path still reads."""
    latest = today - timedelta(days=SHORTEST_LEDGER_RETENTION_DAYS)
    if before > latest:
        raise InvalidInput(
            f"the ledger keeps the last {SHORTEST_LEDGER_RETENTION_DAYS} days of issues: "
            f"prune before {latest} at the latest"
        )


def prune_ledger(
    store: Store,
    *,
    before: date,
    today: date,
    on_pruned: Callable[[int], None] = lambda _: None,
) -> int:
    """Delete the ledger rows of issues dated before `before`; return how many went."""
    check_cutoff(before, today=today)
    pruned = 0
    while True:
        deleted = store.prune_deliveries(before=before, limit=PRUNED_PER_TRANSACTION)
        if not deleted:
            return pruned
        pruned += deleted
        on_pruned(deleted)

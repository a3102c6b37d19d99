"""`paperwire deliveries prune`, run as the installed command: old issues go from the ledger
with a count and a progress bar, recent ones never, and a bad cut-off is one line."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from service.models import Subscriber
from service.store import Store
from tests.support.cli_runner import Run
from tests.support.factories import add_subscriber, send_issue


def ledger_with_issues(tmp_path: Path, days_ago: list[int]) -> tuple[Store, Subscriber, date]:
    # Dates from the clock the command itself reads, so the test runs on any day.
    today = datetime.now(UTC).date()
    store = Store(f"sqlite:///{tmp_path / 'cli.db'}")
    alice = add_subscriber(store, now=datetime.now(UTC))
    for days in days_ago:
        day = today - timedelta(days=days)
        send_issue(store, alice, day, paper_ids=[f"p-{days}"], now=datetime.now(UTC))
    return store, alice, today


def test_prune_deletes_issues_older_than_the_retention(seeded: Run, tmp_path: Path) -> None:
    store, alice, today = ledger_with_issues(tmp_path, [200, 100, 61, 59, 2])
    try:
        refused = seeded(
            "deliveries", "prune", check_exit=None, PAPERWIRE_LEDGER_RETENTION_DAYS="60"
        )
        assert refused.returncode != 0
        assert "pass --yes" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

        pruned = seeded("deliveries", "prune", "--yes", PAPERWIRE_LEDGER_RETENTION_DAYS="60")

        assert f"3 issues dated before {today - timedelta(days=60)} deleted" in pruned.stdout
        assert "deleting issues" in pruned.stderr
        kept = [
            days
            for days in (200, 100, 61, 59, 2)
            if store.get_delivery(alice.id, today - timedelta(days=days))
        ]
        assert kept == [59, 2]
        again = seeded("deliveries", "prune", "--yes", PAPERWIRE_LEDGER_RETENTION_DAYS="60")
        assert "no issue dated before" in again.stdout
    finally:
        store.close()


def test_prune_refuses_the_last_thirty_days_and_bad_dates(seeded: Run, tmp_path: Path) -> None:
    store, alice, today = ledger_with_issues(tmp_path, [20])
    try:
        recent = seeded(
            "deliveries",
            "prune",
            "--before",
            str(today - timedelta(days=10)),
            "--yes",
            check_exit=2,
        )
        assert "keeps the last 30 days" in recent.stderr
        garbled = seeded("deliveries", "prune", "--before", "last year", "--yes", check_exit=2)
        assert "invalid date 'last year'" in garbled.stderr
        assert store.get_delivery(alice.id, today - timedelta(days=20)) is not None
        kept_all = seeded("deliveries", "prune", PAPERWIRE_LEDGER_RETENTION_DAYS="0")
        assert "every issue is kept" in kept_all.stdout
    finally:
        store.close()

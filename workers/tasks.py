"""Thin tasks: parse arguments, build dependencies from settings, call one service function."""

import asyncio
from datetime import date

from service.digest import run_day
from service.settings import get_settings
from service.store import Store
from workers.celery_app import app


@app.task(name="paperwire.run_digest_day")  # type: ignore[untyped-decorator]
def run_digest_day_task(issue_date: str) -> dict[str, int]:
    """Deliver one day's issues; safe to repeat because the ledger claims each issue once."""
    settings = get_settings()
    store = Store(settings.database_url)
    try:
        summary = asyncio.run(
            run_day(store, issue_date=date.fromisoformat(issue_date), settings=settings)
        )
    finally:
        store.close()
    return {outcome.value: count for outcome, count in summary.outcomes.items()}

"""The clock-ahead run (`make test-clock-ahead`) really runs with the clock moved."""

import os
from datetime import UTC, date, datetime, timedelta

import pytest

REAL_DATE = os.environ.get("PAPERWIRE_TEST_REAL_DATE")


@pytest.mark.skipif(REAL_DATE is None, reason="only in the clock-ahead run")
def test_the_clock_is_400_days_ahead_of_the_real_date() -> None:
    assert REAL_DATE is not None
    ahead = datetime.now(UTC).date() - date.fromisoformat(REAL_DATE)
    assert timedelta(days=399) <= ahead <= timedelta(days=401)

"""Issue times in each subscriber's own time zone, across daylight-saving changes."""

from datetime import UTC, date, datetime, timedelta

import pytest

from service.delivery.schedule import Schedule
from service.models import Frequency

GIVE_UP = timedelta(hours=20)


def daily(time_zone: str, hour: int = 8) -> Schedule:
    return Schedule(time_zone=time_zone, delivery_hour=hour, frequency=Frequency.DAILY, weekday=0)


@pytest.mark.parametrize(
    ("time_zone", "issue_date", "expected_utc"),
    [
        # London: GMT until 29 March 2026, BST (UTC+1) after.
        ("Europe/London", date(2026, 3, 28), datetime(2026, 3, 28, 8, tzinfo=UTC)),
        ("Europe/London", date(2026, 3, 30), datetime(2026, 3, 30, 7, tzinfo=UTC)),
        # Los Angeles: PDT (UTC-7) until 1 November 2026, PST (UTC-8) after.
        ("America/Los_Angeles", date(2026, 10, 31), datetime(2026, 10, 31, 15, tzinfo=UTC)),
        ("America/Los_Angeles", date(2026, 11, 2), datetime(2026, 11, 2, 16, tzinfo=UTC)),
        # Tokyo has no daylight saving: always UTC+9, the issue lands the previous UTC day.
        ("Asia/Tokyo", date(2026, 3, 29), datetime(2026, 3, 28, 23, tzinfo=UTC)),
    ],
)
def test_delivery_follows_local_time(
    time_zone: str, issue_date: date, expected_utc: datetime
) -> None:
    assert daily(time_zone).delivery_at(issue_date) == expected_utc


def test_an_hour_skipped_by_the_clock_change_is_sent_an_hour_later() -> None:
    # 01:00 does not exist in London on 29 March 2026 (01:00 GMT becomes 02:00 BST).
    assert daily("Europe/London", hour=1).delivery_at(date(2026, 3, 29)) == datetime(
        2026, 3, 29, 1, tzinfo=UTC
    )


def test_an_hour_that_happens_twice_is_sent_once_at_its_first_occurrence() -> None:
    # 01:00 happens twice in Los Angeles on 1 November 2026; the first is 08:00 UTC.
    assert daily("America/Los_Angeles", hour=1).delivery_at(date(2026, 11, 1)) == datetime(
        2026, 11, 1, 8, tzinfo=UTC
    )


@pytest.mark.parametrize("time_zone", ["Europe/London", "America/Los_Angeles", "Asia/Tokyo"])
def test_one_issue_per_local_day_across_a_dst_change(time_zone: str) -> None:
    schedule = daily(time_zone, hour=7)
    start = datetime(2026, 3, 20, tzinfo=UTC)
    due_dates = set()
    planned_at: dict[date, datetime] = {}
    # Every 15 minutes for three weeks around the March changes (and Tokyo, which has none).
    for tick in range(21 * 24 * 4):
        now = start + timedelta(minutes=15 * tick)
        issue_date = schedule.due_issue_date(now, give_up_after=GIVE_UP)
        if issue_date is None or schedule.delivery_at(issue_date) < start:
            continue
        if issue_date not in due_dates:
            due_dates.add(issue_date)
            planned_at[issue_date] = now
    assert len(due_dates) == 21
    for issue_date, now in planned_at.items():
        local = schedule.delivery_at(issue_date)
        assert timedelta(0) <= now - local < timedelta(minutes=15)  # planned at the first tick


def test_weekly_subscribers_are_due_once_a_week_on_their_weekday() -> None:
    schedule = Schedule(
        time_zone="America/Los_Angeles", delivery_hour=9, frequency=Frequency.WEEKLY, weekday=4
    )
    start = datetime(2026, 10, 20, tzinfo=UTC)
    due = {
        issue_date
        for tick in range(28 * 24)
        if (
            issue_date := schedule.due_issue_date(
                start + timedelta(hours=tick), give_up_after=GIVE_UP
            )
        )
    }
    assert sorted(due) == [
        date(2026, 10, 23),
        date(2026, 10, 30),
        date(2026, 11, 6),
        date(2026, 11, 13),
    ]
    assert all(day.weekday() == 4 for day in due)


def test_nothing_is_due_before_the_hour_or_after_the_give_up_window() -> None:
    schedule = daily("Europe/London", hour=8)

    def due(now: datetime) -> date | None:
        return schedule.due_issue_date(now, give_up_after=GIVE_UP)

    assert due(datetime(2026, 11, 25, 7, 59, tzinfo=UTC)) is None  # the 24th's is 23 h 59 old
    assert due(datetime(2026, 11, 25, 8, 0, tzinfo=UTC)) == date(2026, 11, 25)
    assert due(datetime(2026, 11, 26, 3, 59, tzinfo=UTC)) == date(2026, 11, 25)
    assert due(datetime(2026, 11, 26, 4, 0, tzinfo=UTC)) is None  # 20 h late: given up

"""When a subscriber's issues are due: their hour, in their own time zone, daily or weekly."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from service.models import DeliveryPreferences, Frequency


@dataclass(frozen=True)
class Schedule:
    """What decides when issues go out; subscribers sharing one are planned together."""

    time_zone: str
    delivery_hour: int
    frequency: Frequency
    weekday: int

    @classmethod
    def of(cls, preferences: DeliveryPreferences) -> "Schedule":
        """The schedule a subscriber chose."""
        return cls(
            time_zone=preferences.time_zone,
            delivery_hour=preferences.delivery_hour,
            frequency=preferences.frequency,
            weekday=preferences.weekday,
        )

    def is_issue_day(self, local_date: date) -> bool:
        return self.frequency is Frequency.DAILY or local_date.weekday() == self.weekday

    def delivery_at(self, issue_date: date) -> datetime:
        """The instant (UTC) the issue of `issue_date` is due.

        An hour that does not exist that day (clocks go forward) is read with the offset in
        force before the change, so it lands one hour later in local time; an hour that occurs
        twice (clocks go back) means its first occurrence. Either way, one instant per issue.
        """
        local = datetime.combine(issue_date, time(self.delivery_hour), ZoneInfo(self.time_zone))
        return local.astimezone(UTC)

    def latest_issue_date(self, now: datetime) -> date | None:
        """The most recent issue date whose delivery time is at or before `now`."""
        local_today = now.astimezone(ZoneInfo(self.time_zone)).date()
        # A weekly schedule has an issue day in every run of seven consecutive days.
        for days_back in range(8):
            candidate = local_today - timedelta(days=days_back)
            if self.is_issue_day(candidate) and self.delivery_at(candidate) <= now:
                return candidate
        return None

    def due_issue_date(self, now: datetime, *, give_up_after: timedelta) -> date | None:
        """The issue to plan at `now`: the latest one that is due and not yet too late to send."""
        issue_date = self.latest_issue_date(now)
        if issue_date is None or now >= self.delivery_at(issue_date) + give_up_after:
            return None
        return issue_date

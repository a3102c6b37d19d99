"""The daily digest's path: which issues are due (planning, schedules), then claim → rank →
render → send → record for each (pipeline)."""

"""What an operator watches Paperwire by: its log lines (`logs`) and what it tells
Prometheus: counts and timings where things happen (`metrics` for the web app and the
subscription functions, `sending` for the delivery pipeline), and the state of the delivery
ledger and the queue read when a scrape asks (`delivery`), which stays true however many
processes and machines send.

Nothing here holds an address or a link token: metric labels come from short fixed lists and
from route templates, and log lines are redacted (`logs.redact`)."""

"""Building emails (compose, wire, inlining, dkim) kept apart from sending them (transport,
ratelimit)."""

"""Signup with double opt-in and self-service from the links in every email: subscriptions,
the signed links and their tokens, addresses, one-off emails (notices), the archive copy and
the web's rate limits."""

"""Support code for tests and benches: references, fixtures' helpers, fakes. No tests."""

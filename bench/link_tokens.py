"""Link tokens made by `service.signup.tokens` against itsdangerous, the library such tokens are
usually built on: their length, the `List-Unsubscribe` line they make, and their cost.

Run from the project root (itsdangerous comes with the test extras):

    .venv/bin/python -m bench.link_tokens [--base-url https://news.lab.org]

A digest's `List-Unsubscribe` header carries the unsubscribe URL, which cannot be folded inside
(a URI is written whole, RFC 2369), so its line is as long as the URL; RFC 5322 §2.1.1 asks for
lines of at most 78 characters. itsdangerous binds what the tokens here bind, as its salt (the
purpose and the subscriber's link key), over the same subscriber id and issue time.
"""

import argparse
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime

from itsdangerous import URLSafeTimedSerializer

from service.signup.tokens import TokenPurpose, make_subscriber_token, read_subscriber_token

KEY = "a-secret-key-of-the-usual-length-0123456789abcdef"
LINK_KEY = "Yq3Ew3Jz5z0mB1Ck9d0QZg"
SUBSCRIBER_ID = 123_456
HEADER_WIDTH = 78
ROUNDS = 5
COUNT = 20_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="https://paperwire.example.org")
    base = parser.parse_args().base_url
    now = datetime(2026, 11, 25, 7, tzinfo=UTC)

    ours = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, SUBSCRIBER_ID, link_key=LINK_KEY, secret_key=KEY, now=now
    )
    serializers = {
        "itsdangerous (SHA-1, its default)": URLSafeTimedSerializer(
            KEY, salt=f"unsubscribe:{LINK_KEY}"
        ),
        "itsdangerous (SHA-256)": URLSafeTimedSerializer(
            KEY, salt=f"unsubscribe:{LINK_KEY}", signer_kwargs={"digest_method": hashlib.sha256}
        ),
    }
    tokens = {"service.signup.tokens": ours} | {
        name: str(serializer.dumps(SUBSCRIBER_ID)) for name, serializer in serializers.items()
    }

    def read_ours() -> object:
        return read_subscriber_token(
            TokenPurpose.UNSUBSCRIBE, ours, link_key=LINK_KEY, secret_keys=[KEY]
        )

    costs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "service.signup.tokens": (
            lambda: make_subscriber_token(
                TokenPurpose.UNSUBSCRIBE, SUBSCRIBER_ID, link_key=LINK_KEY, secret_key=KEY
            ),
            read_ours,
        ),
    }
    for name, serializer in serializers.items():
        token = tokens[name]
        costs[name] = (
            lambda serializer=serializer: serializer.dumps(SUBSCRIBER_ID),  # type: ignore[misc]
            lambda serializer=serializer, token=token: serializer.loads(token),  # type: ignore[misc]
        )

    print(f"subscriber id {SUBSCRIBER_ID}, base URL {base}")
    print(f"{'tokens by':<36} {'chars':>5} {'header line':>11} {'make µs':>8} {'read µs':>8}")
    for name, token in tokens.items():
        line = f"List-Unsubscribe: <{base}/u/{token}>,"
        make, read = costs[name]
        flag = "" if len(line) <= HEADER_WIDTH else f"  > {HEADER_WIDTH}"
        print(
            f"{name:<36} {len(token):>5} {len(line):>11} {_best_us(make):>8.1f} "
            f"{_best_us(read):>8.1f}{flag}"
        )


def _best_us(work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(COUNT):
            work()
        best = min(best, time.perf_counter() - started)
    return best / COUNT * 1e6


if __name__ == "__main__":
    main()

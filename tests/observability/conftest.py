"""What the metrics tests share: an app served by uvicorn on 127.0.0.1 in a thread of the test,
and the exposition text read back with prometheus_client's own parser."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from tests.support.services import HOST, free_port, wait_until


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` under uvicorn on 127.0.0.1 for the length of the block; its base URL."""
    port = free_port()
    # As `paperwire serve` runs it: uvicorn reads no X-Forwarded-For, the app does.
    config = uvicorn.Config(
        app, host=HOST, port=port, log_level="warning", lifespan="on", proxy_headers=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=10, what="uvicorn start")
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_samples(exposition: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))

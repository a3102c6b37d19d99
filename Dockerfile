# syntax=docker/dockerfile:1
# Paperwire image for the web, worker, beat and migrate services of docker-compose.yml.
# The base is pinned to its Debian release too: a new one changes the system libraries.

# -- builder: compilers live here only ---------------------------------------------------------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# build-essential for any dependency without a wheel for this platform; never in the final image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that a source change reuses this layer.
# The stub package lets pip read the metadata without the real source.
COPY pyproject.toml README.md LICENSE ./
RUN mkdir -p service workers \
    && touch service/__init__.py workers/__init__.py \
    && pip wheel --wheel-dir /wheels . \
    && rm /wheels/paperwire-*.whl

RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links /wheels /wheels/*.whl

# The source, installed in editable mode at /app: the templates are found next to the package
# (service/settings.py looks for PROJECT_ROOT/templates), so the tree must stay where it is.
COPY service/ service/
COPY workers/ workers/
COPY templates/ templates/
RUN /opt/venv/bin/pip install --no-deps -e .

# -- final: the runtime only --------------------------------------------------------------------
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

# A fixed uid, so that volumes can be given to it on the host.
RUN groupadd --system --gid 10001 paperwire \
    && useradd --system --uid 10001 --gid paperwire --home-dir /app --shell /usr/sbin/nologin paperwire

WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app/pyproject.toml /app/README.md /app/LICENSE ./
COPY --from=builder /app/service/ service/
COPY --from=builder /app/workers/ workers/
COPY templates/ templates/
# The outbox (file:// mail URL) and the SQLite default write under ./var.
RUN mkdir -p /app/var && chown paperwire:paperwire /app/var

USER paperwire

EXPOSE 8000

# /healthz checks the database and Redis; no curl in a slim image, so Python asks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

CMD ["paperwire", "serve", "--host", "0.0.0.0", "--port", "8000"]

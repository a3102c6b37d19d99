"""Where a digest's time goes, measured in this process: rank, render and serialize on a
sample of the day's subscribers; then the delivery task's body on batches of extra subscribers,
each stage's own CPU and wall time, and under cProfile the own time of each package."""

import cProfile
import functools
import gc
import inspect
import statistics
import time
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from service.delivery.day_papers import build_digest, load_day_papers
from service.delivery.schedule import Schedule
from service.mail.digest_size import compose_digest_within
from service.models import Frequency, ReadingHistory
from service.settings import Settings
from service.store import Ledger, Store


@dataclass
class StageTimes:
    sample: int
    first_load_ms: float
    load_ms: float
    rank_ms: float
    render_ms: float
    serialize_ms: float
    rank_cpu_ms: float
    render_cpu_ms: float
    serialize_cpu_ms: float
    mean_size: float
    empty: int
    payload: bytes


def measure_stages(
    store: Store, ids: Sequence[int], issue_date: date, *, settings: Settings
) -> StageTimes:
    """Rank, render and serialize for a sample of the day's subscribers, as a worker does it,
    with the day's papers; wall and CPU means. Also picks the raw sender's message."""
    subscribers = store.get_subscribers(ids)
    # Twice: the first call in a process also fills caches (stems, templates) that a pool
    # process keeps from one task to the next; every task pays the second figure.
    started = time.perf_counter()
    load_day_papers(store, issue_date)
    first_load_ms = 1000 * (time.perf_counter() - started)
    started = time.perf_counter()
    day = load_day_papers(store, issue_date)
    load_ms = 1000 * (time.perf_counter() - started)
    wall = {"rank": 0.0, "render": 0.0, "serialize": 0.0}
    cpu = dict(wall)
    payloads: list[bytes] = []
    empty = 0

    def clock() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def add(stage: str, since: tuple[float, float]) -> tuple[float, float]:
        now = clock()
        wall[stage] += now[0] - since[0]
        cpu[stage] += now[1] - since[1]
        return now

    for subscriber_id in ids:
        subscriber = subscribers[subscriber_id]
        mark = clock()
        digest = build_digest(
            subscriber,
            day,
            issue_date=issue_date,
            history=ReadingHistory(),
            limit=settings.digest_size,
        )
        mark = add("rank", mark)
        if not digest.papers:
            empty += 1
            continue
        _, mail = compose_digest_within(digest, settings=settings)
        mark = add("render", mark)
        payloads.append(mail.data)  # written as bytes while composing: nothing left to do
        add("serialize", mark)
    rendered = max(1, len(payloads))
    mean_size = statistics.fmean(len(p) for p in payloads) if payloads else 0.0
    # The raw sender sends one real digest: the one closest to the mean size.
    payload = min(payloads, key=lambda p: abs(len(p) - mean_size)) if payloads else b""
    return StageTimes(
        sample=len(ids),
        first_load_ms=first_load_ms,
        load_ms=load_ms,
        rank_ms=1000 * wall["rank"] / max(1, len(ids)),
        render_ms=1000 * wall["render"] / rendered,
        serialize_ms=1000 * wall["serialize"] / rendered,
        rank_cpu_ms=1000 * cpu["rank"] / max(1, len(ids)),
        render_cpu_ms=1000 * cpu["render"] / rendered,
        serialize_cpu_ms=1000 * cpu["serialize"] / rendered,
        mean_size=mean_size,
        empty=empty,
        payload=payload,
    )


class StageClock:
    """Exclusive CPU and wall time per stage: a stage called inside another (a store call in a
    send, serialize in a send) counts for itself only. Wrapping a handful of functions costs
    next to nothing, unlike a profiler, so the figures are those of an unprofiled run."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        # Per open stage: CPU and wall time of the stages nested in it so far.
        self._stack: list[list[float]] = []

    def _enter(self) -> tuple[float, float]:
        self._stack.append([0.0, 0.0])
        return time.process_time(), time.perf_counter()

    def _leave(self, label: str, started: tuple[float, float]) -> None:
        cpu = time.process_time() - started[0]
        wall = time.perf_counter() - started[1]
        nested = self._stack.pop()
        self.cpu[label] = self.cpu.get(label, 0.0) + cpu - nested[0]
        self.wall[label] = self.wall.get(label, 0.0) + wall - nested[1]
        self.calls[label] = self.calls.get(label, 0) + 1
        if self._stack:
            self._stack[-1][0] += cpu
            self._stack[-1][1] += wall

    def timed(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(function):

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                # One delivery at a time in a task, so while this awaits, the event loop only
                # does this send's I/O: its CPU belongs here.
                started = self._enter()
                try:
                    return await function(*args, **kwargs)
                finally:
                    self._leave(label, started)

            return functools.wraps(function)(timed_async)

        def timed_sync(*args: Any, **kwargs: Any) -> Any:
            started = self._enter()
            try:
                return function(*args, **kwargs)
            finally:
                self._leave(label, started)

        return functools.wraps(function)(timed_sync)


# (label, module or class, attribute): what a delivery task calls, by stage.
def _stage_targets() -> list[tuple[str, Any, str]]:
    import service.delivery.day_papers
    import service.delivery.pipeline
    import service.mail.smtp
    import service.mail.wire

    targets: list[tuple[str, Any, str]] = [
        ("rank: day's papers (load_day_papers)", service.delivery.day_papers, "load_day_papers"),
        ("rank: build_digest", service.delivery.pipeline, "build_digest"),
        ("render: compose_digest_within", service.delivery.pipeline, "compose_digest_within"),
        (
            "serialize: seven_bit_data (relays without 8BITMIME)",
            service.mail.wire.OutgoingMail,
            "seven_bit_data",
        ),
        ("SMTP: send (aiosmtplib)", service.mail.smtp.SmtpTransport, "send"),
        ("SMTP: close (QUIT)", service.mail.smtp.SmtpTransport, "close"),
    ]
    # Every Store method, so whatever the delivery path calls is seen, by name.
    for name in _method_names(Store):
        if name == "__init__" or not name.startswith("_"):
            label = "DB: Store() (engine per task)" if name == "__init__" else f"DB: {name}"
            targets.append((label, Store, name))
    # And every Ledger method: the claims and outcome writes of a batch.
    for name in _method_names(Ledger):
        if not name.startswith("_"):
            targets.append((f"DB: ledger.{name}", Ledger, name))
    return targets


def _method_names(cls: type) -> list[str]:
    """Plain methods of `cls`, its bases' included: a class assembled from parts keeps its
    methods there."""
    names: list[str] = []
    for klass in cls.__mro__[:-1]:  # not `object`
        for name, member in vars(klass).items():
            if inspect.isfunction(member) and name not in names:
                names.append(name)
    return names


@contextmanager
def instrumented(clock: StageClock) -> Iterator[None]:
    """Wrap the stage functions for the duration; always put the originals back. The cyclic
    garbage collector is a stage of its own: it runs inside whatever allocates when a
    generation fills up, and would otherwise be charged to that."""
    # (owner, name, original, whether the owner itself held it rather than a base class)
    saved: list[tuple[Any, str, Any, bool]] = []
    collecting: list[tuple[float, float]] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting.append(clock._enter())
        elif collecting:
            clock._leave(
                f"GC: generation {info.get('generation', '?')} collections", collecting.pop()
            )

    gc.callbacks.append(on_gc)
    try:
        for label, owner, name in _stage_targets():
            original = getattr(owner, name, None)
            if original is None:
                continue
            saved.append((owner, name, original, name in vars(owner)))
            setattr(owner, name, clock.timed(label, original))
        yield
    finally:
        gc.callbacks.remove(on_gc)
        for owner, name, original, owned in reversed(saved):
            if owned:
                setattr(owner, name, original)
            else:
                delattr(owner, name)


@dataclass
class StageProfile:
    digests: int
    cpu_seconds: float
    wall_seconds: float
    cpu: dict[str, float]
    wall: dict[str, float]
    calls: dict[str, int]


def _run_batches(batches: Sequence[Sequence[tuple[int, date]]]) -> int:
    from workers.tasks import send_digest_batch_task

    sent = 0
    for batch in batches:
        items = [[subscriber_id, day.isoformat()] for subscriber_id, day in batch]
        outcome = send_digest_batch_task.run(items)
        sent += int(outcome.get("sent", 0))
    return sent


def time_stages(batches: Sequence[Sequence[tuple[int, date]]]) -> StageProfile:
    """The delivery task's body on these batches, with each stage's exclusive time."""
    clock = StageClock()
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    with instrumented(clock):
        sent = _run_batches(batches)
    return StageProfile(
        digests=sent,
        cpu_seconds=time.process_time() - cpu_started,
        wall_seconds=time.perf_counter() - wall_started,
        cpu=clock.cpu,
        wall=clock.wall,
        calls=clock.calls,
    )


# Where each function's own time goes, by the package its code lives in.
LIBRARIES = (
    ("sqlalchemy", "/sqlalchemy/"),
    ("psycopg", "/psycopg"),
    ("jinja2 + markupsafe", "/jinja2/"),
    ("jinja2 + markupsafe", "/markupsafe/"),
    ("jinja2 + markupsafe", "<template>"),
    ("css_inline", "css_inline"),
    ("email (stdlib)", "/email/"),
    ("aiosmtplib", "/aiosmtplib/"),
    ("asyncio + selectors", "/asyncio/"),
    ("asyncio + selectors", "selectors.py"),
    ("pydantic", "pydantic"),
    ("snowballstemmer", "snowballstemmer"),
    ("service/ranking/", "service/ranking/"),
    ("service/mail/", "service/mail/"),
    ("service/store/", "service/store/"),
    ("service/delivery/", "service/delivery/"),
)


@dataclass
class LibraryProfile:
    digests: int
    total_seconds: float
    by_library: dict[str, float]
    top: list[tuple[str, float]]


def _library_of(code: object) -> str:
    where = code.co_filename if isinstance(code, types.CodeType) else str(code)
    for library, marker in LIBRARIES:
        if marker in where:
            return library
    if "select.epoll" in where:
        return "waiting on sockets (epoll)"
    if isinstance(code, types.CodeType):
        return "other Python"
    return "other built-ins (C)"


def profile_libraries(batches: Sequence[Sequence[tuple[int, date]]]) -> LibraryProfile:
    """cProfile (wall clock) of the task body: own time of each function, by package."""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    try:
        sent = _run_batches(batches)
    finally:
        profiler.disable()
    total = time.perf_counter() - started
    by_library: dict[str, float] = {}
    functions: list[tuple[str, float]] = []
    for entry in profiler.getstats():
        library = _library_of(entry.code)
        by_library[library] = by_library.get(library, 0.0) + entry.inlinetime
        code = entry.code
        if isinstance(code, types.CodeType):
            where = "/".join(Path(code.co_filename).parts[-2:])
            name = f"{code.co_name} ({where}:{code.co_firstlineno})"
        else:
            name = str(code)
        functions.append((name, entry.inlinetime))
    functions.sort(key=lambda item: -item[1])
    return LibraryProfile(
        digests=sent, total_seconds=total, by_library=by_library, top=functions[:12]
    )


def plan_profile_issues(
    store: Store, issue_date: date, *, weekday: int, now: datetime, settings: Settings
) -> list[list[tuple[int, date]]]:
    """Planned rows for the profile's own subscribers (weekly, not due today), in batches."""
    schedule = Schedule(
        time_zone="UTC", delivery_hour=0, frequency=Frequency.WEEKLY, weekday=weekday
    )
    ids = store.plan_issues(schedule, issue_date, now=now, expires_at=None)
    keys = [(subscriber_id, issue_date) for subscriber_id in ids]
    size = settings.batch_size
    return [keys[start : start + size] for start in range(0, len(keys), size)]

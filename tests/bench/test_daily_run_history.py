"""The earlier days `bench.daily_run --history-days` writes are what the delivery path reads as a
real history: papers sent that are never sent again, votes on profiles, bounces that leave
their subscribers due."""

from datetime import timedelta

from bench.daily_run.harness import (
    day_papers,
    insert_subscribers,
    interest_drawer,
    subscriber_ids,
)
from bench.daily_run.history import seed_history
from service.delivery.day_papers import build_digest, load_day_papers, reading_histories
from service.delivery.planning import plan_due_issues
from service.models import DEFAULT_PAPERS_PER_ISSUE, Frequency, MailEventKind
from service.store import Store
from tests.support.factories import NOW, TODAY, make_settings

SUBSCRIBERS = 30
DAYS = 3
PAPERS_PER_DAY = 60


def seeded_ids(store: Store) -> list[int]:
    store.upsert_papers(day_papers(PAPERS_PER_DAY), now=NOW - timedelta(hours=1))
    insert_subscribers(
        store,
        SUBSCRIBERS,
        first_number=0,
        draw=interest_drawer(7),
        delivery_hour=NOW.hour,
        frequency=Frequency.DAILY,
        weekday=0,
        now=NOW - timedelta(days=DAYS + 1),
    )
    ids = subscriber_ids(store, frequency=Frequency.DAILY)
    seed_history(store, ids, days=DAYS, papers_per_day=PAPERS_PER_DAY, now=NOW, seed=7)
    return ids


def test_every_subscriber_was_sent_ten_new_papers_on_each_earlier_day(store: Store) -> None:
    ids = seeded_ids(store)
    histories = store.reading_history(ids, before=TODAY)
    for subscriber_id in ids:
        history = histories[subscriber_id]
        assert len(history.sent_paper_ids) == DAYS * DEFAULT_PAPERS_PER_ISSUE
        assert history.last_sent_at == NOW - timedelta(days=1)
    assert store.count_papers() == (DAYS + 1) * PAPERS_PER_DAY


def test_the_day_after_sends_none_of_the_history_and_plans_everyone(store: Store) -> None:
    ids = seeded_ids(store)
    planned = plan_due_issues(store, now=NOW, settings=make_settings())
    # A soft bounce leaves its subscriber due.
    assert sorted(subscriber_id for subscriber_id, _ in planned) == ids
    day = load_day_papers(store, TODAY)
    histories = reading_histories(store, ids, TODAY)
    subscribers = store.get_subscribers(ids)
    sent_today = 0
    for subscriber_id in ids:
        digest = build_digest(
            subscribers[subscriber_id],
            day,
            issue_date=TODAY,
            history=histories[subscriber_id],
            limit=DEFAULT_PAPERS_PER_ISSUE,
        )
        paper_ids = {paper.paper.id for section in digest.sections for paper in section.papers}
        assert not paper_ids & histories[subscriber_id].sent_paper_ids
        # Papers of earlier days were there to be sent then: not news now.
        assert not any("-d" in paper_id for paper_id in paper_ids)
        sent_today += len(paper_ids)
    assert sent_today > 0


def test_feedback_and_bounces_are_on_the_subscribers(store: Store) -> None:
    ids = seeded_ids(store)
    subscribers = store.get_subscribers(ids)
    sent = store.reading_history(ids, before=TODAY)
    voters = [s for s in subscribers.values() if s.profiles[0].interests.liked]
    assert voters
    for subscriber in voters:
        assert set(subscriber.profiles[0].interests.liked) <= sent[subscriber.id].sent_paper_ids
    [event] = store.mail_events(ids[0])
    assert event.kind == MailEventKind.SOFT_BOUNCE
    assert subscribers[ids[0]].bounce_score == 0.5

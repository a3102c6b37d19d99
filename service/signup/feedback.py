"""A reader's 👍/👎 on a paper of their digest, from its feedback link: what the link names, and
the verdict it records.

Plain functions over the store, as `service.signup.subscriptions` is: the pages and the API
call them and turn `InvalidToken` into the shared invalid-link answer. Reading a link changes
nothing (mail scanners open links); only `record_feedback` writes, through
`Store.set_paper_vote`, so a verdict given twice is one verdict and the other one replaces it.
"""

from dataclasses import dataclass
from datetime import datetime

from service.errors import UnknownSubscriber
from service.models import InterestProfile, Paper, Subscriber, Vote
from service.observability.metrics import count_feedback_vote
from service.settings import Settings
from service.signup.links import feedback_for_link
from service.signup.tokens import InvalidToken
from service.store import Store


@dataclass(frozen=True)
class FeedbackTarget:
    """The paper a feedback link names, for its subscriber, and their verdict on it now."""

    subscriber: Subscriber
    # The profile the verdict trains: the one whose section had the link, or the first one
    # for a link that names none or names a profile removed since.
    profile: InterestProfile
    paper_id: str
    # None when the paper is not in the store (any more): the digest named it, so a verdict
    # still counts, and pages show its id.
    paper: Paper | None
    vote: Vote | None


@dataclass(frozen=True)
class FeedbackRecorded:
    """A verdict recorded, and the one it replaced (what an undo restores)."""

    target: FeedbackTarget
    previous: Vote | None

    @property
    def changed(self) -> bool:
        return self.previous is not self.target.vote


def feedback_target(
    store: Store, token: str, *, settings: Settings, now: datetime
) -> FeedbackTarget:
    """What a feedback link names, without recording anything. Raises `InvalidToken` for a
    link that is not genuine or whose subscriber is gone."""
    subscriber, profile_id, paper_id = feedback_for_link(store, token, settings=settings, now=now)
    profile = _trained_profile(subscriber, profile_id)
    return FeedbackTarget(
        subscriber=subscriber,
        profile=profile,
        paper_id=paper_id,
        paper=store.get_paper(paper_id),
        vote=profile.interests.vote_of(paper_id),
    )


def record_feedback(
    store: Store, token: str, vote: Vote | None, *, settings: Settings, now: datetime
) -> FeedbackRecorded:
    """Make `vote` the subscriber's verdict on the link's paper (None takes it back): any
    verdict, since the link stands for the reader's say on that paper, not for one button.
    Raises `InvalidToken` as `feedback_target` does."""
    subscriber, profile_id, paper_id = feedback_for_link(store, token, settings=settings, now=now)
    profile = _trained_profile(subscriber, profile_id)
    try:
        previous = store.set_paper_vote(subscriber.id, paper_id, vote, profile_id=profile.id)
    except UnknownSubscriber as exc:
        # Erased between reading the link and writing: the link died with the row.
        raise InvalidToken("the link's subscriber is gone") from exc
    target = FeedbackTarget(
        subscriber=subscriber,
        profile=profile,
        paper_id=paper_id,
        paper=store.get_paper(paper_id),
        vote=vote,
    )
    recorded = FeedbackRecorded(target=target, previous=previous)
    if recorded.changed:
        count_feedback_vote(vote)
    return recorded


def _trained_profile(subscriber: Subscriber, profile_id: int | None) -> InterestProfile:
    """The link's profile; the first one when it names none, or one removed since: the verdict
    on a paper the reader was sent still teaches the digest something, where they will see
    it first. (A profile id is never given again, so it never reaches another profile.)"""
    profile = subscriber.profile(profile_id) if profile_id is not None else None
    return profile or subscriber.first_profile

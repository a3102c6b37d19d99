"""Interest profiles in the store, on SQLite and PostgreSQL: migration 0011 moves each
subscriber's interests into a first profile; profiles are added, edited, renamed, reordered,
voted on and removed, never the last one."""

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from service.errors import InvalidInput, UnknownProfile
from service.models import DEFAULT_PROFILE_NAME, Interests, ProfilePreferences, Vote
from service.store import Store
from tests.store.test_store import _fresh_postgres_store, _ledger_rows, _seed_0006
from tests.support.factories import NOW, add_subscriber, make_preferences

MOVED = (
    "keywords",
    "interests_text",
    "followed_authors",
    "excluded_topics",
    "liked_papers",
    "disliked_papers",
    "trending_weight",
)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


def _interest_columns(store: Store, table: str, key: str) -> dict[int, tuple[Any, ...]]:
    """The moved columns of each subscriber, read with SQL (the store's own queries ask for
    the newest schema)."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            text(f"SELECT {key}, {', '.join(MOVED)} FROM {table} ORDER BY {key}")
        ).all()
    return {row[0]: tuple(_json(value) for value in row[1:]) for row in rows}


def _seed_0010(store: Store) -> None:
    """0006's three subscribers, the second with votes, authors and topics left out."""
    _seed_0006(store)
    store.upgrade("0010")
    with store.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE subscribers SET liked_papers = :liked, disliked_papers = :disliked,"
                " followed_authors = :authors, excluded_topics = :excluded, trending_weight = 0.7"
                " WHERE id = 2"
            ),
            {
                "liked": '["2511.00001", "2511.00002"]',
                "disliked": '["2511.00003"]',
                "authors": '["J. Müller"]',
                "excluded": '["robotics"]',
            },
        )


def _check_0011_moves_interests_into_profiles(store: Store) -> None:
    before = _interest_columns(store, "subscribers", "id")
    ledger_before = _ledger_rows(store)
    store.upgrade("0011")
    moved = _interest_columns(store, "profiles", "subscriber_id")
    assert moved == before
    assert moved[2] == (
        ["graph networks"],
        "About.",
        ["J. Müller"],
        ["robotics"],
        ["2511.00001", "2511.00002"],
        ["2511.00003"],
        0.7,
    )
    with store.engine.connect() as connection:
        left = connection.execute(text("SELECT * FROM subscribers")).keys()
        profiles = connection.execute(
            text("SELECT name, position, papers_per_issue FROM profiles")
        ).all()
    assert not set(MOVED) & set(left)
    assert [tuple(row) for row in profiles] == [(DEFAULT_PROFILE_NAME, 0, 10)] * 3
    assert _ledger_rows(store) == ledger_before
    # The store (at the latest revision) reads what moved.
    store.upgrade()
    second = store.get_subscriber(2)
    assert [profile.name for profile in second.profiles] == [DEFAULT_PROFILE_NAME]
    assert second.interests.liked == ("2511.00001", "2511.00002")
    assert second.trending_weight == 0.7
    record = store.subscriber_record(2)
    assert record["subscriber"]["consent"][0]["event"] == "confirmed"
    assert [row["keywords"] for row in record["profiles"]] == [["graph networks"]]

    # And back (through the later revisions' downgrades): each subscriber's first profile
    # returns to their row.
    store.add_profile(2, ProfilePreferences(name="Second"), max_profiles=5, now=NOW)
    _downgrade(store, "0010")
    assert _interest_columns(store, "subscribers", "id") == before
    assert _ledger_rows(store) == ledger_before
    store.upgrade()
    assert _interest_columns(store, "profiles", "subscriber_id") == before


def _downgrade(store: Store, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "service.store:migrations")
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_migration_0011_moves_interests_into_profiles_on_sqlite(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        store.upgrade("0006")
        _seed_0010(store)
        _check_0011_moves_interests_into_profiles(store)
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    finally:
        store.close()


def test_migration_0011_moves_interests_into_profiles_on_postgresql(postgres_url: str) -> None:
    with _fresh_postgres_store(postgres_url, "0011") as store:
        store.upgrade("0006")
        _seed_0010(store)
        _check_0011_moves_interests_into_profiles(store)


def test_a_new_subscriber_has_one_profile_from_their_preferences(store: Store) -> None:
    alice = add_subscriber(
        store, interests=Interests(keywords=("diffusion",), liked=("2511.00001",))
    )
    (profile,) = alice.profiles
    assert (profile.name, profile.papers_per_issue) == (DEFAULT_PROFILE_NAME, 10)
    assert profile.interests.liked == ("2511.00001",)
    assert store.get_subscriber(alice.id).profiles == alice.profiles


def test_profiles_are_added_renamed_reordered_and_removed_in_order(store: Store) -> None:
    alice = add_subscriber(store)
    first = alice.first_profile
    rl = store.add_profile(
        alice.id,
        ProfilePreferences(
            name="  RL   theory ",
            interests=Interests(keywords=("bandits",), liked=("2511.00009",)),
            papers_per_issue=30,
            trending_weight=0.0,
        ),
        max_profiles=3,
        now=NOW,
    )
    assert (rl.name, rl.papers_per_issue, rl.interests.liked) == ("RL theory", 30, ("2511.00009",))
    graphs = store.add_profile(alice.id, ProfilePreferences(name="Graphs"), max_profiles=3, now=NOW)
    names = [profile.name for profile in store.get_subscriber(alice.id).profiles]
    assert names == [DEFAULT_PROFILE_NAME, "RL theory", "Graphs"]

    store.rename_profile(alice.id, first.id, "Diffusion", now=NOW)
    store.reorder_profiles(alice.id, [graphs.id, first.id, rl.id], now=NOW)
    profiles = store.get_subscriber(alice.id).profiles
    assert [profile.name for profile in profiles] == ["Graphs", "Diffusion", "RL theory"]
    # The one-profile pages show the first one.
    assert store.get_subscriber(alice.id).interests == profiles[0].interests

    store.remove_profile(alice.id, graphs.id)
    store.remove_profile(alice.id, rl.id)
    (left,) = store.get_subscriber(alice.id).profiles
    assert (left.id, left.name) == (first.id, "Diffusion")
    with pytest.raises(InvalidInput, match="at least one"):
        store.remove_profile(alice.id, first.id)
    # Ids are never given again.
    again = store.add_profile(alice.id, ProfilePreferences(name="Graphs"), max_profiles=3, now=NOW)
    assert again.id > graphs.id


@pytest.mark.parametrize(
    "change",
    ["same name", "same name in other case", "too many", "unknown profile", "bad order"],
)
def test_profile_changes_that_are_refused_change_nothing(store: Store, change: str) -> None:
    alice = add_subscriber(store)
    other = store.add_profile(alice.id, ProfilePreferences(name="Graphs"), max_profiles=2, now=NOW)
    before = store.get_subscriber(alice.id).profiles
    error: type[Exception] = InvalidInput
    with pytest.raises(Exception) as raised:
        if change == "same name":
            store.add_profile(alice.id, ProfilePreferences(name="Graphs"), max_profiles=5, now=NOW)
        elif change == "same name in other case":
            store.rename_profile(alice.id, alice.first_profile.id, "GRAPHS", now=NOW)
        elif change == "too many":
            store.add_profile(alice.id, ProfilePreferences(name="Third"), max_profiles=2, now=NOW)
        elif change == "unknown profile":
            error = UnknownProfile
            bob = add_subscriber(store, "bob@example.org")
            store.update_profile(bob.id, other.id, ProfilePreferences(name="Mine"), now=NOW)
        else:
            store.reorder_profiles(alice.id, [other.id, other.id], now=NOW)
    assert isinstance(raised.value, error)
    assert store.get_subscriber(alice.id).profiles == before


def test_a_profile_can_change_the_case_of_its_own_name(store: Store) -> None:
    alice = add_subscriber(store)
    renamed = store.rename_profile(alice.id, alice.first_profile.id, "MY INTERESTS", now=NOW)
    assert renamed.name == "MY INTERESTS"


def test_votes_train_the_profile_named_and_editing_keeps_them(store: Store) -> None:
    alice = add_subscriber(store)
    rl = store.add_profile(alice.id, ProfilePreferences(name="RL"), max_profiles=5, now=NOW)
    assert store.set_paper_vote(alice.id, "2511.00001", Vote.LIKE, profile_id=rl.id) is None
    assert store.set_paper_vote(alice.id, "2511.00002", Vote.DISLIKE) is None
    first, second = store.get_subscriber(alice.id).profiles
    assert (first.interests.liked, first.interests.disliked) == ((), ("2511.00002",))
    assert (second.interests.liked, second.interests.disliked) == (("2511.00001",), ())

    store.update_profile(
        alice.id,
        rl.id,
        ProfilePreferences(name="RL theory", interests=Interests(keywords=("bandits",))),
        now=NOW,
    )
    store.update_preferences(alice.id, make_preferences(interests=Interests(keywords=("gnn",))))
    first, second = store.get_subscriber(alice.id).profiles
    assert (second.name, second.interests.keywords) == ("RL theory", ("bandits",))
    assert second.interests.liked == ("2511.00001",)
    assert (first.interests.keywords, first.interests.disliked) == (("gnn",), ("2511.00002",))

    # A vote for a profile removed since trains the first one.
    store.remove_profile(alice.id, rl.id)
    store.set_paper_vote(alice.id, "2511.00003", Vote.LIKE, profile_id=rl.id)
    (first,) = store.get_subscriber(alice.id).profiles
    assert first.interests.liked == ("2511.00003",)


def test_erasure_removes_every_profile(store: Store) -> None:
    alice = add_subscriber(store)
    store.add_profile(alice.id, ProfilePreferences(name="RL"), max_profiles=5, now=NOW)
    assert len(store.subscriber_record(alice.id)["profiles"]) == 2
    store.erase_subscriber(alice.id, address_hash="h" * 64, now=NOW)
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM profiles")).scalar_one() == 0
    bob = add_subscriber(store, "bob@example.org")
    store.remove_subscriber("bob@example.org")
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM profiles")).scalar_one() == 0
    assert bob.id > alice.id

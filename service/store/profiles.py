"""The store's interest profiles: each subscriber's named profiles, in their order, added,
edited, renamed, reordered and removed (never the last one)."""

from collections.abc import Sequence
from datetime import datetime

from service.errors import InvalidInput, UnknownProfile
from service.models import InterestProfile, ProfilePreferences
from service.store.database import Database
from service.store.rows import apply_profile, new_profile_row, to_profile
from service.store.subscribers import locked_subscriber
from service.store.tables import ProfileRow, SubscriberRow


class ProfileStore(Database):
    """Interest profiles. Every change locks the subscriber's row first, so two changes at
    once cannot both pass the checks (a name taken twice, one profile too many)."""

    def add_profile(
        self,
        subscriber_id: int,
        preferences: ProfilePreferences,
        *,
        max_profiles: int,
        now: datetime,
    ) -> InterestProfile:
        """A new last profile, liked and disliked papers included."""
        with self._session() as session:
            row = locked_subscriber(session, subscriber_id)
            if len(row.profiles) >= max_profiles:
                raise InvalidInput(f"at most {max_profiles} interest profiles")
            _check_name_is_free(row, preferences.name)
            position = max((profile.position for profile in row.profiles), default=-1) + 1
            profile = new_profile_row(preferences, position=position, now=now, with_votes=True)
            row.profiles.append(profile)
            session.flush()
            return to_profile(profile)

    def update_profile(
        self,
        subscriber_id: int,
        profile_id: int,
        preferences: ProfilePreferences,
        *,
        now: datetime,
    ) -> InterestProfile:
        """Replace a profile's name, interests and numbers, except its liked and disliked
        papers, which change one vote at a time (`set_paper_vote`)."""
        with self._session() as session:
            row = locked_subscriber(session, subscriber_id)
            profile = _profile_of(row, profile_id)
            _check_name_is_free(row, preferences.name, besides=profile)
            apply_profile(profile, preferences, now=now)
            return to_profile(profile)

    def rename_profile(
        self, subscriber_id: int, profile_id: int, name: str, *, now: datetime
    ) -> InterestProfile:
        with self._session() as session:
            row = locked_subscriber(session, subscriber_id)
            profile = _profile_of(row, profile_id)
            renamed = ProfilePreferences(name=name)  # the name, checked as every name is
            _check_name_is_free(row, renamed.name, besides=profile)
            profile.name = renamed.name
            profile.updated_at = now
            return to_profile(profile)

    def reorder_profiles(
        self, subscriber_id: int, profile_ids: Sequence[int], *, now: datetime
    ) -> list[InterestProfile]:
        """Put the profiles in the order of `profile_ids`, which names each of them once."""
        with self._session() as session:
            row = locked_subscriber(session, subscriber_id)
            by_id = {profile.id: profile for profile in row.profiles}
            if sorted(profile_ids) != sorted(by_id):
                raise InvalidInput("name each of the subscriber's profiles once, in the new order")
            for position, profile_id in enumerate(profile_ids):
                profile = by_id[profile_id]
                if profile.position != position:
                    profile.position = position
                    profile.updated_at = now
            return [to_profile(by_id[profile_id]) for profile_id in profile_ids]

    def remove_profile(self, subscriber_id: int, profile_id: int) -> None:
        """Delete a profile with its votes; the last one stays (a digest needs one)."""
        with self._session() as session:
            row = locked_subscriber(session, subscriber_id)
            profile = _profile_of(row, profile_id)
            if len(row.profiles) == 1:
                raise InvalidInput(
                    "a subscriber keeps at least one interest profile: edit it instead"
                )
            row.profiles.remove(profile)  # delete-orphan: the session deletes its row


def _profile_of(row: SubscriberRow, profile_id: int) -> ProfileRow:
    for profile in row.profiles:
        if profile.id == profile_id:
            return profile
    raise UnknownProfile(f"no interest profile with id {profile_id}")


def _check_name_is_free(
    row: SubscriberRow, name: str, *, besides: ProfileRow | None = None
) -> None:
    """Names are told apart regardless of case: "Diffusion" and "diffusion" would head two
    sections nobody could tell apart."""
    for profile in row.profiles:
        if profile is not besides and profile.name.casefold() == name.casefold():
            raise InvalidInput(f"there is a profile named {profile.name!r} already")

"""Tokens in email links: round trips, purposes, tampering, key rotation, expiry."""

from datetime import UTC, date, datetime, timedelta

import pytest

from service.signup.tokens import (
    InvalidToken,
    TokenExpired,
    TokenPurpose,
    claimed_subscriber_id,
    make_confirm_token,
    make_issue_token,
    make_subscriber_token,
    make_token,
    read_issue_token,
    read_subscriber_token,
    read_token,
    token_issued_at,
)

KEY = "test-secret-key"
LINK_KEY = "the-subscriber-link-key"
NOW = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)


def test_a_subscriber_token_round_trips() -> None:
    token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 42, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    assert (
        read_subscriber_token(TokenPurpose.UNSUBSCRIBE, token, link_key=LINK_KEY, secret_keys=[KEY])
        == 42
    )


def test_an_issue_token_round_trips() -> None:
    token = make_issue_token(42, date(2026, 11, 25), link_key=LINK_KEY, secret_key=KEY, now=NOW)
    assert read_issue_token(token, link_key=LINK_KEY, secret_keys=[KEY]) == (42, date(2026, 11, 25))


def test_any_text_payload_round_trips() -> None:
    token = make_token(TokenPurpose.MANAGE, "héllo:1", secret_key=KEY, now=NOW)
    assert read_token(TokenPurpose.MANAGE, token, secret_keys=[KEY]) == "héllo:1"


def test_tokens_are_compact_and_url_safe() -> None:
    token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 123_456, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    assert len(token) <= 30
    assert token.replace("-", "").replace("_", "").isalnum()


@pytest.mark.parametrize("other", [TokenPurpose.MANAGE, TokenPurpose.ARCHIVE])
def test_a_token_of_one_purpose_never_reads_as_another(other: TokenPurpose) -> None:
    token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 42, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    with pytest.raises(InvalidToken):
        read_token(other, token, secret_keys=[KEY], binding=LINK_KEY)


def _tampered(token: str, index: int) -> str:
    replacement = "A" if token[index] != "A" else "B"
    return token[:index] + replacement + token[index + 1 :]


@pytest.mark.parametrize("index", [0, 3, 6, 10, -1])
def test_a_tampered_token_is_refused(index: int) -> None:
    token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 42, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    with pytest.raises(InvalidToken):
        read_token(
            TokenPurpose.UNSUBSCRIBE, _tampered(token, index), secret_keys=[KEY], binding=LINK_KEY
        )


@pytest.mark.parametrize("keep", [0, 1, 5, 20, -1, -2])
def test_a_truncated_token_is_refused(keep: int) -> None:
    token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 42, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    with pytest.raises(InvalidToken):
        read_token(TokenPurpose.UNSUBSCRIBE, token[:keep], secret_keys=[KEY], binding=LINK_KEY)


@pytest.mark.parametrize("junk", ["", "not a token", "abc=", "a+b/c", "é" * 24, "A" * 600])
def test_junk_is_refused(junk: str) -> None:
    with pytest.raises(InvalidToken):
        read_token(TokenPurpose.UNSUBSCRIBE, junk, secret_keys=[KEY], binding=LINK_KEY)


def test_a_token_signed_with_an_unknown_key_is_refused() -> None:
    token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 42, link_key=LINK_KEY, secret_key="other", now=NOW
    )
    with pytest.raises(InvalidToken):
        read_token(TokenPurpose.UNSUBSCRIBE, token, secret_keys=[KEY], binding=LINK_KEY)


def test_an_old_key_still_reads_while_listed() -> None:
    token = make_subscriber_token(
        TokenPurpose.MANAGE, 7, link_key=LINK_KEY, secret_key="old-key", now=NOW
    )
    assert (
        read_subscriber_token(
            TokenPurpose.MANAGE, token, link_key=LINK_KEY, secret_keys=[KEY, "old-key"]
        )
        == 7
    )
    with pytest.raises(InvalidToken):
        read_subscriber_token(TokenPurpose.MANAGE, token, link_key=LINK_KEY, secret_keys=[KEY])


def test_a_token_older_than_max_age_has_expired() -> None:
    token = make_subscriber_token(
        TokenPurpose.MANAGE, 7, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    max_age = timedelta(days=3)
    in_time = NOW + timedelta(days=3)
    late = NOW + timedelta(days=3, seconds=1)

    def read(now: datetime) -> int:
        return read_subscriber_token(
            TokenPurpose.MANAGE,
            token,
            link_key=LINK_KEY,
            secret_keys=[KEY],
            max_age=max_age,
            now=now,
        )

    assert read(in_time) == 7
    with pytest.raises(TokenExpired):
        read(late)


def test_an_expired_token_is_also_an_invalid_one() -> None:
    assert issubclass(TokenExpired, InvalidToken)


def test_a_forged_old_token_is_invalid_not_expired() -> None:
    token = make_subscriber_token(
        TokenPurpose.MANAGE, 7, link_key=LINK_KEY, secret_key="forger", now=NOW
    )
    later = NOW + timedelta(days=30)
    with pytest.raises(InvalidToken) as caught:
        read_token(
            TokenPurpose.MANAGE, token, secret_keys=[KEY], max_age=timedelta(days=1), now=later
        )
    assert not isinstance(caught.value, TokenExpired)


def test_keys_must_be_a_list_not_one_string() -> None:
    token = make_subscriber_token(
        TokenPurpose.MANAGE, 7, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    with pytest.raises(TypeError):
        read_token(TokenPurpose.MANAGE, token, secret_keys=KEY)
    with pytest.raises(ValueError):
        read_token(TokenPurpose.MANAGE, token, secret_keys=[])


def test_a_subscriber_reader_refuses_a_payload_that_is_not_an_id() -> None:
    token = make_token(TokenPurpose.MANAGE, "42:x", secret_key=KEY, now=NOW, binding=LINK_KEY)
    with pytest.raises(InvalidToken):
        read_subscriber_token(TokenPurpose.MANAGE, token, link_key=LINK_KEY, secret_keys=[KEY])


@pytest.mark.parametrize("reader_key", ["another-subscriber-key", None])
def test_a_link_reads_only_with_the_link_key_it_was_made_with(reader_key: str | None) -> None:
    token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 42, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    with pytest.raises(InvalidToken) as caught:
        read_subscriber_token(
            TokenPurpose.UNSUBSCRIBE, token, link_key=reader_key, secret_keys=[KEY]
        )
    assert not isinstance(caught.value, TokenExpired)


def test_a_link_from_before_link_keys_reads_only_without_one() -> None:
    token = make_subscriber_token(TokenPurpose.MANAGE, 42, link_key=None, secret_key=KEY, now=NOW)
    assert read_subscriber_token(TokenPurpose.MANAGE, token, link_key=None, secret_keys=[KEY]) == 42
    with pytest.raises(InvalidToken):
        read_subscriber_token(TokenPurpose.MANAGE, token, link_key=LINK_KEY, secret_keys=[KEY])


def test_a_bound_link_is_as_short_as_an_unbound_one() -> None:
    bound = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 123_456, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    unbound = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 123_456, link_key=None, secret_key=KEY, now=NOW
    )
    assert len(bound) == len(unbound) and bound != unbound


def test_every_link_names_the_subscriber_to_look_up_and_when_it_was_made() -> None:
    tokens = [
        make_subscriber_token(TokenPurpose.MANAGE, 42, link_key=LINK_KEY, secret_key=KEY, now=NOW),
        make_issue_token(42, date(2026, 11, 25), link_key=LINK_KEY, secret_key=KEY, now=NOW),
        make_confirm_token(42, "nonce", link_key=LINK_KEY, secret_key=KEY, now=NOW),
    ]
    assert [claimed_subscriber_id(token) for token in tokens] == [42, 42, 42]
    assert {token_issued_at(token) for token in tokens} == {NOW}


@pytest.mark.parametrize("payload", ["", "x", ":1", "-1", "1" * 19, "\uff14\uff12"])
def test_a_token_without_a_subscriber_id_claims_none(payload: str) -> None:
    token = make_token(TokenPurpose.MANAGE, payload, secret_key=KEY, now=NOW)
    with pytest.raises(InvalidToken):
        claimed_subscriber_id(token)

"""Email address validation and normalisation."""

from email_validator import EmailNotValidError, validate_email

from service.errors import InvalidInput


def normalise_email(raw: str, *, check_deliverability: bool = False) -> str:
    """Return the address in the one form the store keys subscribers by.

    The whole address is lower-cased: mailbox providers treat local parts case-insensitively
    in practice, and two rows for `Ann@x.org` and `ann@x.org` would mean two digests.
    """
    try:
        checked = validate_email(raw.strip(), check_deliverability=check_deliverability)
    except EmailNotValidError as exc:
        raise InvalidInput(f"invalid email address {raw!r}: {exc}") from exc
    return checked.normalized.lower()

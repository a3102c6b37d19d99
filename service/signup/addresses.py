"""Email address validation and normalisation."""

from email_validator import EmailNotValidError, validate_email

from service.errors import InvalidInput


def normalise_email(raw: str, *, check_deliverability: bool = False) -> str:
    """Return the address in the one form the store keys subscribers by.

    The whole address is lower-cased: mailbox providers treat local parts case-insensitively
    in practice, and two rows for `Ann@x.org` and `ann@x.org` would mean two digests. A local
    part must be ASCII (an internationalised domain is fine: it is sent as IDNA).
    """
    try:
        # Without SMTPUTF8: mail goes out to relays that may not offer it, and an address that
        # cannot be sent to is better refused here, with a clear message, than stored.
        checked = validate_email(
            raw.strip(), check_deliverability=check_deliverability, allow_smtputf8=False
        )
    except EmailNotValidError as exc:
        raise InvalidInput(f"invalid email address {raw[:320]!r}: {exc}") from exc
    return checked.normalized.lower()


# Providers that deliver `a.b+tag@` to `ab@`: signups for such variants count against one
# mailbox. Dots are ignored only by Gmail; "+tag" is a sub-address at each of these.
# (Elsewhere the local part is taken as it is: a "+" or "." may name a different mailbox.)
_IGNORES_DOTS = frozenset({"gmail.com", "googlemail.com"})
_PLUS_TAGS = _IGNORES_DOTS | frozenset(
    {
        "outlook.com",
        "hotmail.com",
        "live.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "fastmail.com",
        "fastmail.fm",
        "protonmail.com",
        "proton.me",
        "pm.me",
    }
)
# googlemail.com is the same mailbox as gmail.com.
_SAME_DOMAIN = {"googlemail.com": "gmail.com"}


def mailbox_key(email: str) -> str:
    """The mailbox a normalised address delivers to, as far as the table above knows."""
    local, _, domain = email.rpartition("@")
    if domain in _PLUS_TAGS:
        local = local.partition("+")[0]
    if domain in _IGNORES_DOTS:
        local = local.replace(".", "")
    return f"{local}@{_SAME_DOMAIN.get(domain, domain)}"

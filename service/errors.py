"""Domain errors. The CLI and the web layer turn these into messages and responses."""


class PaperwireError(Exception):
    """Base of every error Paperwire reports to a person instead of a traceback."""


class InvalidInput(PaperwireError):
    """Input a person typed or a file held is not acceptable."""


class AlreadySubscribed(PaperwireError):
    """The address already has a subscriber row."""


class UnknownSubscriber(PaperwireError):
    """No subscriber has that address or id."""


class ServiceUnavailable(PaperwireError):
    """A service Paperwire needs (the broker, the relay) cannot be reached now."""


class UnknownProfile(PaperwireError):
    """The subscriber has no interest profile with that id or name."""

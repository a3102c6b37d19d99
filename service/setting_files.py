"""Settings read from files, as Docker secrets and Kubernetes give them: for any setting NAME,
`PAPERWIRE_<NAME>_FILE` names a file whose content is the value (`PAPERWIRE_SECRET_KEY_FILE=
/run/secrets/secret_key`). The variable may be in the environment or in the .env file.

The content is taken as it is, less the line ends at its end (`echo` and `openssl rand` write
one); a list setting's file holds the JSON its variable would. A setting given both ways is
refused rather than one way silently winning, as the postgres image refuses
POSTGRES_PASSWORD with POSTGRES_PASSWORD_FILE. A file that cannot be read, or is larger than
any setting, is a one-line error naming the variable.

`url_with_password` puts a password given on its own (`database_password`, from the same
secret file as postgres's POSTGRES_PASSWORD_FILE) into a database URL that names its user
only, so the password is written in one place.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from service.errors import PaperwireError

ENV_PREFIX = "PAPERWIRE_"
FILE_SUFFIX = "_FILE"
# Far above any setting (a JSON list of old keys, a URL); read no further than this.
MAX_SETTING_FILE_BYTES = 65_536


class SettingFileError(PaperwireError):
    """A `PAPERWIRE_<NAME>_FILE` that cannot be used: unreadable, too large, or given along
    with `PAPERWIRE_<NAME>` itself."""


class SettingFilesSource(PydanticBaseSettingsSource):
    """The values of `PAPERWIRE_<NAME>_FILE` files, for every setting NAME.

    `dotenv` holds the variables of the .env file read (lower-cased names, as pydantic-settings
    keeps them); the environment wins over it, as it does for the settings themselves."""

    def __init__(self, settings_cls: type[BaseSettings], *, dotenv: Mapping[str, str | None]):
        super().__init__(settings_cls)
        self.variables = {
            **{name.lower(): value for name, value in dotenv.items()},
            **{name.lower(): value for name, value in os.environ.items()},
        }

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = f"{ENV_PREFIX}{field_name}{FILE_SUFFIX}".lower()
        path = self.variables.get(variable)
        if not path:
            return None, field_name, False
        plain = f"{ENV_PREFIX}{field_name}".lower()
        if plain in self.variables:
            raise SettingFileError(
                f"{plain.upper()} and {variable.upper()} are both set: keep one of them"
            )
        return read_setting_file(variable.upper(), Path(path)), field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, field_name)
            if value is not None:
                values[key] = self.prepare_field_value(field_name, field, value, False)
        return values


def read_setting_file(variable: str, path: Path) -> str:
    """The value held by `path`, less its final line ends."""
    try:
        with path.open("rb") as file:
            content = file.read(MAX_SETTING_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SettingFileError(f"{variable}: cannot read {path}: {reason}") from exc
    if len(content) > MAX_SETTING_FILE_BYTES:
        raise SettingFileError(
            f"{variable}: {path} is larger than {MAX_SETTING_FILE_BYTES} bytes, more than any "
            "setting holds"
        )
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingFileError(f"{variable}: {path} is not UTF-8 text") from exc
    return text.rstrip("\r\n")


def url_with_password(url: str, password: str) -> str:
    """`url` (`postgresql+psycopg://paperwire@postgres/paperwire`) with `password` put in after
    its user name, percent-encoded. Raises ValueError for a URL with no user to give it to, or
    with a password of its own."""
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        raise ValueError("database_password is set, but database_url is a SQLite file")
    user, at, host = parts.netloc.rpartition("@")
    if not at or not user:
        raise ValueError(
            "database_password is set, but database_url names no user "
            "(postgresql+psycopg://USER@HOST/DB)"
        )
    if ":" in user:
        raise ValueError("database_url holds a password and database_password is set: give it once")
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))

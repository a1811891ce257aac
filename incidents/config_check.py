"""What `check-config` and start-up report about the settings: secrets masked, unknown names.

Both walk the Settings model itself, so a field added to any section is covered without
a list to keep in step.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from incidents.config import Settings

PREFIX = "INCIDENTS_"
DELIMITER = "__"
MASK = "***"

# A name part that marks a secret: api_token, broker_password, client_secret, signing_key.
_SECRET_PART = re.compile(r"(api)?(token|password|passwd|passphrase|secret|credentials?|key)s?")
# user:password@ in any URL; the user name stays, the password goes.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*):(?P<pw>[^/@\s]*)@")


def is_secret_name(name: str) -> bool:
    """True when a setting's name says it holds a secret."""
    return any(_SECRET_PART.fullmatch(part) for part in re.split(r"[_\-.]", name.lower()) if part)


def mask_url(text: str) -> str:
    """Replace the password of every `scheme://user:password@` in the text."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@" if m["pw"] else m[0], text)


def masked(value: Any, name: str = "") -> Any:
    """A copy of a JSON-like value with secrets masked: by key name, and in URLs."""
    if isinstance(value, dict):
        return {key: masked(item, str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item, name) for item in value]
    if isinstance(value, str):
        if value and is_secret_name(name):
            return MASK
        return mask_url(value)
    if value is not None and is_secret_name(name) and not isinstance(value, bool):
        return MASK
    return value


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The settings as JSON-ready data, safe to print."""
    data: dict[str, Any] = masked(settings.model_dump(mode="json"))
    return data


def _section(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_mapping(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return origin is Any or (isinstance(origin, type) and issubclass(origin, Mapping))


def _names(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, bool]]:
    # (environment name, whether deeper names under it are valid too: dict keys)
    for field_name, field in model.model_fields.items():
        env_name = f"{prefix}{field_name.upper()}"
        yield env_name, _is_mapping(field.annotation)
        section = _section(field.annotation)
        if section is not None:
            yield from _names(section, env_name + DELIMITER)


def known_environment_names() -> tuple[set[str], set[str]]:
    """Every `INCIDENTS_*` name a setting answers to, and the names that take sub-keys."""
    exact: set[str] = set()
    open_ended: set[str] = set()
    for name, takes_keys in _names(Settings, PREFIX):
        exact.add(name)
        if takes_keys:
            open_ended.add(name + DELIMITER)
    return exact, open_ended


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """One message per `INCIDENTS_*` variable that sets nothing, with the closest name."""
    environ = os.environ if environ is None else environ
    exact, open_ended = known_environment_names()
    messages = []
    for name in sorted(environ):
        upper = name.upper()  # the settings read the environment case-insensitively
        if not upper.startswith(PREFIX) or upper in exact or upper.startswith(tuple(open_ended)):
            continue
        # Compared without the common prefix, which would make every name look alike.
        rest = [known[len(PREFIX) :] for known in sorted(exact)]
        close = difflib.get_close_matches(upper[len(PREFIX) :], rest, n=1, cutoff=0.6)
        hint = f"; did you mean {PREFIX}{close[0]}?" if close else ""
        messages.append(f"unknown setting {name} in the environment is ignored{hint}")
    return messages

"""Where the service is and which key to send: flags, then environment, then a file.

Each of `url` and `key` is taken from the first of: the `--url` / `--key` flag, the
INCIDENTS_URL / INCIDENTS_KEY variable, the YAML file named by `--client-config` (else
`$XDG_CONFIG_HOME/incidents/client.yaml`, else `~/.config/incidents/client.yaml`), and
the default (`http://127.0.0.1:8080`, no key).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_URL = "http://127.0.0.1:8080"
URL_ENV = "INCIDENTS_URL"
KEY_ENV = "INCIDENTS_KEY"
FILE_KEYS = frozenset({"url", "key"})


class UsageError(Exception):
    """The command line or the client's config file is wrong (exit status 2)."""


@dataclass(frozen=True)
class Connection:
    """The base URL of the service and the API key (empty: send none)."""

    url: str
    key: str


def default_config_path(environ: Mapping[str, str]) -> Path:
    """The client config file used when `--client-config` is not given."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "incidents" / "client.yaml"


def read_config_file(path: Path, *, required: bool) -> dict[str, str]:
    """The `url` and `key` of a client config file; {} if it is optional and absent."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise UsageError(f"{path}: no such file") from None
        return {}
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise UsageError(f"{where}: not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping with `url` and `key`")
    unknown = sorted(str(k) for k in data if k not in FILE_KEYS)
    if unknown:
        raise UsageError(f"{path}: unknown key {unknown[0]!r} (expected `url` and `key`)")
    out: dict[str, str] = {}
    for name, value in data.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise UsageError(f"{path}: {name}: expected a string")
        out[str(name)] = value
    return out


def check_url(url: str, origin: str) -> str:
    """The URL without a trailing slash, or a usage error naming where it came from."""
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise UsageError(f"{origin}: expected an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


def resolve(
    url: str | None,
    key: str | None,
    config_file: str | None,
    environ: Mapping[str, str] | None = None,
) -> Connection:
    """The connection the flags, the environment and the config file describe."""
    env = os.environ if environ is None else environ
    path = Path(config_file) if config_file else default_config_path(env)
    need_file = (url is None and not env.get(URL_ENV)) or (key is None and not env.get(KEY_ENV))
    from_file = read_config_file(path, required=bool(config_file)) if need_file else {}
    if url is not None:
        chosen_url = check_url(url, "--url")
    elif env.get(URL_ENV):
        chosen_url = check_url(env[URL_ENV], URL_ENV)
    elif "url" in from_file:
        chosen_url = check_url(from_file["url"], f"{path}: url")
    else:
        chosen_url = DEFAULT_URL
    if key is not None:
        chosen_key = key
    elif env.get(KEY_ENV):
        chosen_key = env[KEY_ENV]
    else:
        chosen_key = from_file.get("key", "")
    return Connection(chosen_url, chosen_key)

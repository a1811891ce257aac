"""Where the settings come from: the environment (known names only) and the YAML file.

A setting whose name ends in `_file`, `_dir`, `_path` or `folder` names a path. When it
comes from the YAML file and is relative, it is taken relative to that file's folder (as is the path
of a relative `sqlite:///` database URL); from the environment it stays relative to the
working directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from incidents.documents import parse_yaml
from incidents.exceptions import ConfigError


class KnownNamesOnly(PydanticBaseSettingsSource):
    """The environment without names that match no setting (`INCIDENTS_INGEST__TYPO`).

    Those are reported as warnings at start-up (`incidents.config_check`), not refused:
    an environment often carries stray variables, and a YAML file is where strictness
    belongs.
    """

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _known_only(self._inner(), self.settings_cls)


def _known_only(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    out = {}
    for name, value in data.items():
        field = model.model_fields.get(name)
        if field is None:
            continue
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel) and isinstance(value, dict):
            value = _known_only(value, section)
        out[name] = value
    return out


class YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by `config` (given directly) or `INCIDENTS_CONFIG`."""

    def __init__(self, settings_cls: type[BaseSettings], explicit: str | None) -> None:
        super().__init__(settings_cls)
        self._explicit = explicit

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_path(self._explicit)
        if not path:
            return {}
        data, _ = read_yaml_with_lines(Path(path))
        return _resolve_paths(data, self.settings_cls, Path(path).resolve().parent)


def config_path(explicit: str | None = None) -> str:
    """The YAML file to read: the one given, else INCIDENTS_CONFIG, else none ("")."""
    return explicit if explicit is not None else os.environ.get("INCIDENTS_CONFIG", "")


PATH_SUFFIXES = ("_file", "_dir", "_path", "folder")


def _resolve_paths(data: dict[str, Any], model: type[BaseModel], base: Path) -> dict[str, Any]:
    # Only keys the model knows: anything else is left for validation to name.
    out = dict(data)
    for name, value in data.items():
        field = model.model_fields.get(name) if isinstance(name, str) else None
        if field is None:
            continue
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            if isinstance(value, dict):
                out[name] = _resolve_paths(value, section, base)
        elif name.endswith(PATH_SUFFIXES):
            out[name] = _against(value, base)
        elif name == "database_url" and isinstance(value, str):
            out[name] = _sqlite_against(value, base)
    return out


def _against(value: Any, base: Path) -> Any:
    if isinstance(value, list):
        return [_against(item, base) for item in value]
    if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
        return str(base / value)
    return value


def _sqlite_against(url: str, base: Path) -> str:
    prefix, _, path = url.partition(":///")
    if prefix.startswith("sqlite") and path and path != ":memory:" and not path.startswith("/"):
        return f"{prefix}:///{base / path}"
    return url


def read_yaml_with_lines(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """Parse a YAML mapping and remember the line of every key path."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
    try:
        node, data = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config file must be a mapping of settings")
    lines: dict[tuple[str, ...], int] = {}
    _collect_lines(node, (), lines)
    return data, lines


def _collect_lines(
    node: yaml.Node | None, prefix: tuple[str, ...], out: dict[tuple[str, ...], int]
) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*prefix, str(key_node.value))
            out[key] = key_node.start_mark.line + 1
            _collect_lines(value_node, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            key = (*prefix, str(index))
            out[key] = item.start_mark.line + 1
            _collect_lines(item, key, out)

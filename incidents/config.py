"""Settings: one object, from `INCIDENTS_*` environment variables and an optional YAML file.

Environment variables win over the YAML file. A bad value fails at start-up with the
file, line and field that caused it, never later on the first page.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from incidents.exceptions import ConfigError

SEVERITIES = ("P0", "P1", "P2", "P3")
Severity = Literal["P0", "P1", "P2", "P3"]

DEFAULT_SEVERITY_MAP: dict[str, Severity] = {
    "critical": "P0",
    "high": "P1",
    "error": "P1",
    "warning": "P2",
    "info": "P3",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestSettings(_Section):
    """How alerts are parsed, classified and written."""

    # Alertmanager sends a whole group as one body and drops a 413 for good: the default
    # takes a storm of 50,000 alerts of about 800 bytes. Applies to gzip-decoded size too.
    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    severity_labels: list[str] = Field(default_factory=lambda: ["severity", "priority"])
    severity_map: dict[str, Severity] = Field(default_factory=lambda: dict(DEFAULT_SEVERITY_MAP))
    default_severity: Severity = "P3"
    service_labels: list[str] = Field(
        default_factory=lambda: ["service", "app", "job", "component"]
    )
    # Identical deliveries (Alertmanager retries, HA pairs) within this window count once.
    duplicate_window_seconds: float = Field(default=300.0, ge=0)
    # Group commit: at most this many requests share one transaction.
    max_batch_requests: int = Field(default=256, gt=0)
    # Beyond this many requests waiting for a commit we answer 503 so the sender retries.
    max_pending_requests: int = Field(default=5000, gt=0)
    commit_timeout_seconds: float = Field(default=20.0, gt=0)

    @field_validator("severity_map")
    @classmethod
    def _lower_keys(cls, value: dict[str, Severity]) -> dict[str, Severity]:
        return {k.lower(): v for k, v in value.items()}

    @field_validator("service_labels", "severity_labels")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one label name")
        return value


class InhibitRule(_Section):
    """Alerts matching `target_matchers` are muted while an alert matching `source_matchers`
    fires with the same values of the `equal` labels. `__severity__` and `__service__` name
    the derived severity and service, so rules can use them like labels."""

    source_matchers: list[str]
    target_matchers: list[str]
    equal: list[str] = Field(default_factory=list)

    @field_validator("source_matchers", "target_matchers")
    @classmethod
    def _parse(cls, value: list[str]) -> list[str]:
        from incidents.exceptions import ValidationFailed
        from incidents.routing.matchers import parse_matchers

        if not value:
            raise ValueError("needs at least one matcher")
        for text in value:
            try:
                parse_matchers(text)
            except ValidationFailed as exc:
                raise ValueError(exc.message) from None
        return value


def _default_inhibit_rules() -> list[InhibitRule]:
    return [
        InhibitRule(
            source_matchers=['__severity__="P0"'],
            target_matchers=['__severity__=~"P2|P3"'],
            equal=["__service__"],
        )
    ]


class CorrelationSettings(_Section):
    """How alerts become incidents, and what mutes them."""

    # Off: alerts are stored and muted state is not computed (for benchmarks and bulk imports).
    enabled: bool = True
    # YAML file with the service graph; loaded at start-up when the database has none.
    graph_file: str = ""
    hops: int = Field(default=2, ge=0, le=10)
    window_seconds: float = Field(default=600.0, gt=0)
    flap_changes: int = Field(default=4, ge=1)
    flap_window_seconds: float = Field(default=1800.0, gt=0)
    inhibit_rules: list[InhibitRule] = Field(default_factory=_default_inhibit_rules)

    @field_validator("graph_file")
    @classmethod
    def _graph_readable(cls, value: str) -> str:
        if not value:
            return value
        if not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        from incidents.correlation.graph import ServiceGraph
        from incidents.exceptions import ValidationFailed

        try:
            ServiceGraph.from_file(value)
        except ValidationFailed as exc:
            raise ValueError(f"invalid service graph: {exc.message}") from None
        return value


class PipelineSettings(_Section):
    """How stored alerts reach the pipeline workers."""

    # Jobs left pending this long (lost enqueue, crashed worker) are picked up again.
    sweep_interval_seconds: float = Field(default=15.0, gt=0)
    stale_after_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=10, gt=0)
    # A run takes up to this many waiting jobs together (shares the per-run cost).
    max_jobs_per_run: int = Field(default=50, ge=1, le=1000)


class Settings(BaseSettings):
    """Every setting of the service."""

    model_config = SettingsConfigDict(
        env_prefix="INCIDENTS_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    database_url: str = "sqlite:///var/incidents.db"
    broker_url: str = ""
    api_token: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    config: str = ""
    log_level: str = "INFO"
    log_json: bool = True
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    correlation: CorrelationSettings = Field(default_factory=CorrelationSettings)

    @field_validator("database_url")
    @classmethod
    def _check_db(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgres:", "postgresql+")):
            raise ValueError("must be a postgresql://user@host:port/db or sqlite:///path URL")
        return value

    @field_validator("broker_url")
    @classmethod
    def _check_broker(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "memory://", "amqp://")):
            raise ValueError("must be empty (embedded worker) or a redis:// URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        explicit = getattr(init_settings, "init_kwargs", {}).get("config")
        return (init_settings, env_settings, _YamlSource(settings_cls, explicit))

    @property
    def embedded_worker(self) -> bool:
        """True when no broker is configured and the API process runs the pipeline itself."""
        return not self.broker_url


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by `config` (given directly) or `INCIDENTS_CONFIG`."""

    def __init__(self, settings_cls: type[BaseSettings], explicit: str | None) -> None:
        super().__init__(settings_cls)
        self._explicit = explicit

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = (
            self._explicit if self._explicit is not None else os.environ.get("INCIDENTS_CONFIG", "")
        )
        if not path:
            return {}
        data, _ = read_yaml_with_lines(Path(path))
        return data


def read_yaml_with_lines(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """Parse a YAML mapping and remember the line of every key path."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
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


def _describe(exc: ValidationError) -> str:
    path = os.environ.get("INCIDENTS_CONFIG", "")
    lines: dict[tuple[str, ...], int] = {}
    if path:
        try:
            _, lines = read_yaml_with_lines(Path(path))
        except ConfigError:
            lines = {}
    problems = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        name = ".".join(loc)
        env_name = "INCIDENTS_" + "__".join(loc).upper()
        line = None
        for depth in range(len(loc), 0, -1):
            if loc[:depth] in lines:
                line = lines[loc[:depth]]
                break
        if line is not None and env_name not in os.environ:
            where = f"{path}:{line}: "
        elif env_name in os.environ or (loc and f"INCIDENTS_{loc[0].upper()}" in os.environ):
            where = f"environment {env_name}: "
        else:
            where = ""
        problems.append(f"{where}{name}: {err['msg']}")
    return "invalid configuration: " + "; ".join(problems)


def load_settings(**overrides: Any) -> Settings:
    """Build the Settings, raising ConfigError that names the file, line and field."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()

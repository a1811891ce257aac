"""Settings: one object, from `INCIDENTS_*` environment variables and an optional YAML file.

Environment variables win over the YAML file. A bad value fails at start-up with the
file, line and field that caused it, never later on the first page.

A setting whose name ends in `_file`, `_dir`, `_path` or `folder` names a path; a relative
one in the YAML file is taken from the file's folder (see `incidents.config_sources`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from incidents.apikeys.settings import AuthSettings
from incidents.config_sources import KnownNamesOnly, YamlSource, config_path, read_yaml_with_lines
from incidents.escalation.policy import EscalationDocument
from incidents.escalation.policy import check_config as check_escalation
from incidents.exceptions import ConfigError
from incidents.heartbeats.spec import HeartbeatList
from incidents.notify.routing_config import RoutingSettings, default_routing
from incidents.notify.settings import ChannelSettings
from incidents.oncall.documents import Schedule, User, check_sections
from incidents.playbooks.settings import PlaybookSettings
from incidents.vocab import SEVERITY_ORDER
from incidents.warroom.settings import WarRoomSettings

SEVERITIES = SEVERITY_ORDER
Severity = Literal["P0", "P1", "P2", "P3"]

DEFAULT_SEVERITY_MAP: dict[str, Severity] = {
    "critical": "P0",
    "high": "P1",
    "error": "P1",
    "warning": "P2",
    "info": "P3",
}


DEFAULT_SERVICE_LABELS = (
    "service",
    "app",
    "app_kubernetes_io_name",
    "component",
    "deployment",
    "statefulset",
    "daemonset",
    "job_name",
    "pod",
    "job",
)
DEFAULT_EXPORTERS = ("kube-state-metrics", "node-exporter", "cadvisor", "kubelet", "blackbox")
DEFAULT_IGNORE_ALERTS = ('alertname="Watchdog"', 'alertname="InfoInhibitor"')


def _matcher_set(text: str) -> str:
    from incidents.exceptions import ValidationFailed
    from incidents.routing.matchers import parse_matchers

    try:
        parse_matchers(text)
    except ValidationFailed as exc:
        raise ValueError(exc.message) from None
    return text


# A matcher set such as `{alertname="Watchdog"}`, checked where the settings are read.
MatcherSet = Annotated[str, AfterValidator(_matcher_set)]


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
    # The first label present, with a value that does not name a known exporter, names the
    # service; `pod` loses its controller's generated suffix (see ingest/classify.py).
    service_labels: list[str] = Field(default_factory=lambda: list(DEFAULT_SERVICE_LABELS))
    # A value naming one of these (or `<prefix>-<name>`, as Helm releases name them)
    # describes the scraper, not the workload, and is skipped; except in the workload
    # labels (deployment, statefulset, daemonset, job_name), which name the subject.
    exporters: list[str] = Field(default_factory=lambda: list(DEFAULT_EXPORTERS))
    # Alerts matching any entry (a matcher set) are stored and shown but open no incident
    # and page no one; so are alerts whose severity label is `none`.
    ignore_alerts: list[MatcherSet] = Field(default_factory=lambda: list(DEFAULT_IGNORE_ALERTS))
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

    @field_validator("exporters")
    @classmethod
    def _lower_names(cls, value: list[str]) -> list[str]:
        return [v.strip().lower() for v in value if v.strip()]


class InhibitRule(_Section):
    """Alerts matching `target_matchers` are muted while an alert matching `source_matchers`
    fires with the same values of the `equal` labels. `__severity__` and `__service__` name
    the derived severity and service, so rules can use them like labels."""

    source_matchers: list[str]
    target_matchers: list[str]
    equal: list[str] = Field(default_factory=list)

    @field_validator("source_matchers", "target_matchers")
    @classmethod
    def _parse(cls, value: list[str], info: ValidationInfo) -> list[str]:
        from incidents.exceptions import ValidationFailed
        from incidents.routing.matchers import parse_matchers

        if not value:
            raise ValueError("needs at least one matcher")
        for index, text in enumerate(value):
            try:
                # Alertmanager's grammar and RE2, as for silences and label filters.
                parse_matchers(text, where=f"{info.field_name}[{index}]")
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
    # YAML (or .json) file with the service graph. Applied at start-up whenever its graph
    # differs from the one it held when last applied; a graph replaced through the API
    # since stays until the file changes again.
    graph_file: str = ""
    hops: int = Field(default=2, ge=0, le=10)
    window_seconds: float = Field(default=600.0, gt=0)
    flap_changes: int = Field(default=4, ge=1)
    flap_window_seconds: float = Field(default=1800.0, gt=0)
    inhibit_rules: list[InhibitRule] = Field(default_factory=_default_inhibit_rules)
    # Incidents that may page as they open in any minute; past it, new incidents still
    # open but share one "alert storm" page. 0 turns the cap off.
    max_new_incidents_per_minute: int = Field(default=30, ge=0)
    # An incident's opening page is held this long; a merge within it folds the page away.
    open_hold_seconds: float = Field(default=15.0, ge=0, le=600)
    # Once all its alerts resolved, an incident is `monitoring` this long and then resolves
    # by itself; an alert firing again meanwhile takes it back. 0 resolves at once.
    quiet_period_seconds: float = Field(default=1800.0, ge=0)
    # A firing alert not sent again for this long is shown as stale: Alertmanager re-sends
    # firing alerts every repeat_interval (4 h by default; this is 3 times that), and an
    # alert it stopped sending may have lost its resolve. 0: never stale.
    stale_after_seconds: float = Field(default=43200.0, ge=0)

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
            graph = ServiceGraph.from_file(value)
        except ValidationFailed as exc:
            raise ValueError(f"invalid service graph: {exc.message}") from None
        if len(graph) == 0:
            # Applying it would empty the stored graph at the next start.
            raise ValueError(f"{value}: the service graph lists no services")
        return value


class PipelineSettings(_Section):
    """How stored alerts reach the pipeline workers."""

    # The outbox sweep: jobs pending this long (hand-off lost or dropped while the broker
    # was down) and jobs whose worker stopped renewing its lease are handed out again.
    sweep_interval_seconds: float = Field(default=3.0, gt=0)
    # A running job's lease; its worker renews it every third of this. A killed worker's
    # job waits at most about lease_seconds + sweep_interval_seconds.
    lease_seconds: float = Field(default=6.0, ge=0.5)
    # Un-muting alerts whose silence ended, closing quiet flapping incidents, finding
    # missed heartbeats.
    upkeep_interval_seconds: float = Field(default=15.0, gt=0)
    # How often due escalation steps are looked for: a step runs at most this long after
    # its deadline (plus the time to run the ones before it).
    escalation_sweep_seconds: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=10, gt=0)
    # A run takes up to this many waiting jobs together (shares the per-run cost).
    max_jobs_per_run: int = Field(default=50, ge=1, le=1000)


class HttpSettings(_Section):
    """Limits of the HTTP server: body sizes, timeouts for slow clients, connections."""

    # Body limit of API endpoints other than ingest (which use ingest.max_body_bytes).
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # PUT /api/v1/services/graph: a 10,000-service graph is a few MB.
    graph_max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # A request line and headers must arrive within this time, or the connection closes.
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    # Longest wait for the next piece of a request body before a 408.
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    # An idle keep-alive connection is closed after this time.
    keep_alive_timeout_seconds: int = Field(default=5, ge=1)
    # Beyond this many open connections (or requests in progress), requests get a 503.
    max_connections: int = Field(default=1000, gt=0)
    # Refused credentials are logged at most once per client address per interval.
    auth_log_interval_seconds: float = Field(default=60.0, ge=0)


class Settings(BaseSettings, ChannelSettings):
    """Every setting of the service."""

    model_config = SettingsConfigDict(
        env_prefix="INCIDENTS_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    database_url: str = "sqlite:///var/incidents.db"
    broker_url: str = ""
    api_token: str = ""
    # The service's address as providers call it (scheme, host, port, path prefix), for
    # checking Twilio's signatures behind a proxy; empty: see incidents.api.twilio_signature.
    public_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    config: str = ""
    log_level: str = "INFO"
    log_json: bool = True
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    correlation: CorrelationSettings = Field(default_factory=CorrelationSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    # Receivers and the route tree (see incidents.notify.routing); without a `routing:`
    # section everything goes to one console receiver.
    routing: RoutingSettings = Field(default_factory=default_routing)
    # Who can be on call, and the on-call schedules (see incidents.oncall): applied at
    # start-up when they changed since last applied; left out, the stored ones stay.
    users: list[User] | None = None
    schedules: list[Schedule] | None = None
    # Dead man's switches (incidents.heartbeats), applied at start-up; None: stored ones stay.
    heartbeats: HeartbeatList | None = None
    # The escalation policies (as PUT /api/v1/escalation-policies), applied at start-up.
    escalation: EscalationDocument | None = None
    # The P0 war room: a Slack channel per P0 incident (see incidents.warroom).
    warroom: WarRoomSettings = Field(default_factory=WarRoomSettings)
    playbooks: PlaybookSettings = Field(default_factory=PlaybookSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)

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

    @model_validator(mode="after")
    def _oncall_sections(self) -> Settings:
        check_sections(self.users, self.schedules)
        return self

    @model_validator(mode="after")
    def _escalation_section(self) -> Settings:
        check_escalation(
            self.escalation,
            [(r.name, r.escalation_policy) for r in self.routing.receivers],
            None if self.users is None else [u.name for u in self.users],
            None if self.schedules is None else [(s.name, s.team) for s in self.schedules],
        )
        return self

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
        return (
            init_settings,
            KnownNamesOnly(settings_cls, env_settings),
            YamlSource(settings_cls, explicit),
        )

    @property
    def embedded_worker(self) -> bool:
        """True when no broker is configured and the API process runs the pipeline itself."""
        return not self.broker_url


def _describe(exc: ValidationError, path: str) -> str:
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


def load_settings(config: str | None = None, **overrides: Any) -> Settings:
    """Build the Settings (from `config`, else INCIDENTS_CONFIG), raising ConfigError that
    names the file, line and field."""
    if config is not None:
        overrides["config"] = config
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_path(overrides.get("config")))) from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()

"""Heartbeat definitions: validation with paths, in the config file with file and line."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from incidents.cli import main
from incidents.config import load_settings
from incidents.exceptions import ConfigError
from incidents.heartbeats.spec import Definitions, Heartbeat, HeartbeatsDocument, spoken
from tests.conftest import ROOT

WATCHDOG = {
    "name": "alertmanager",
    "interval": "1m",
    "grace": "4m",
    "alert": {"matchers": ['alertname="Watchdog"']},
}


def problems(document: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as raised:
        HeartbeatsDocument.model_validate(document)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in raised.value.errors()}


def test_defaults_and_normal_form() -> None:
    document = HeartbeatsDocument.model_validate(
        {"heartbeats": [WATCHDOG, {"name": "backup", "interval": "1h", "grace": "0s"}]}
    )
    watchdog, backup = document.heartbeats
    assert (watchdog.severity, watchdog.service, watchdog.title) == ("P1", "monitoring", None)
    assert watchdog.period() == timedelta(minutes=5)
    assert backup.alert is None and backup.period() == timedelta(hours=1)
    assert HeartbeatsDocument.model_validate({"heartbeats": []}).heartbeats == []


@pytest.mark.parametrize(
    ("entry", "path", "words"),
    [
        ({"interval": "5x"}, "heartbeats.0.interval", "not a valid duration"),
        ({"interval": 30}, "heartbeats.0.interval", "no unit"),
        ({"interval": "0s"}, "heartbeats.0.interval", "longer than 0"),
        ({"grace": "soon"}, "heartbeats.0.grace", "not a valid duration"),
        ({"name": "has space"}, "heartbeats.0.name", "pattern"),
        ({"name": ""}, "heartbeats.0.name", "pattern"),
        ({"severity": "P7"}, "heartbeats.0.severity", "P0"),
        ({"service": ""}, "heartbeats.0.service", "at least 1"),
        ({"service": "a\x00b"}, "heartbeats.0.service", "NUL"),
        ({"alert": {"matchers": []}}, "heartbeats.0.alert.matchers", "at least 1"),
        ({"alert": {"matchers": ['alertname=="X"']}}, "heartbeats.0.alert.matchers.0", ""),
        ({"alert": {"matchers": ['x=~"(a"']}}, "heartbeats.0.alert.matchers.0", "regular"),
        ({"alert": {"matchers": ['x=~".*"']}}, "heartbeats.0.alert.matchers", "empty label"),
        ({"alert": {"labels": {}}}, "heartbeats.0.alert.labels", "not permitted"),
        ({"every": "1m"}, "heartbeats.0.every", "not permitted"),
    ],
)
def test_each_problem_is_named_by_its_path(entry: dict[str, Any], path: str, words: str) -> None:
    found = problems({"heartbeats": [{**WATCHDOG, **entry}]})
    assert path in found, found
    assert words.lower() in found[path].lower()


def test_a_name_defined_twice_is_named_at_the_second() -> None:
    found = problems({"heartbeats": [WATCHDOG, {**WATCHDOG, "interval": "2m"}]})
    assert found == {"heartbeats.1.name": "heartbeat 'alertmanager' is defined twice"}


def test_missing_fields_are_named() -> None:
    found = problems({"heartbeats": [{"name": "x"}]})
    assert set(found) == {"heartbeats.0.interval", "heartbeats.0.grace"}
    assert set(problems({})) == {"heartbeats"}


def test_titles_say_how_long_nothing_arrived() -> None:
    document = HeartbeatsDocument.model_validate(
        {
            "heartbeats": [
                WATCHDOG,
                {"name": "backup", "interval": "1h", "grace": "10m"},
                {**WATCHDOG, "name": "custom", "title": "No Watchdog for {elapsed}!"},
                {**WATCHDOG, "name": "fixed", "title": "Alerting is down"},
            ]
        }
    )
    watchdog, backup, custom, fixed = (Heartbeat.of(s) for s in document.heartbeats)
    five = timedelta(minutes=5, seconds=12)
    assert (
        watchdog.title(five)
        == "Alertmanager Watchdog has not arrived for 5 minutes: alerting may be broken"
    )
    assert backup.title(timedelta(hours=1, minutes=10)) == (
        "Heartbeat backup has not been pinged for 70 minutes"
    )
    assert backup.title(timedelta(hours=2, minutes=10)).endswith("for 2 hours 10 minutes")
    assert custom.title(five) == "No Watchdog for 5 minutes!"
    assert fixed.title(five) == "Alerting is down"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (59, "59 seconds"),
        (61, "1 minute"),
        (300, "5 minutes"),
        (7199, "119 minutes"),
        (7200, "2 hours"),
        (3 * 3600 + 60, "3 hours 1 minute"),
        (50 * 3600, "2 days"),
    ],
)
def test_spoken_durations(seconds: int, text: str) -> None:
    assert spoken(timedelta(seconds=seconds)) == text


def test_the_alert_index_finds_what_matches() -> None:
    document = HeartbeatsDocument.model_validate(
        {
            "heartbeats": [
                WATCHDOG,
                {
                    **WATCHDOG,
                    "name": "eu",
                    "alert": {"matchers": ['{alertname="Watchdog",dc="eu"}']},
                },
                {**WATCHDOG, "name": "any-dead", "alert": {"matchers": ['kind=~"dead.*"']}},
                {"name": "cron", "interval": "1d", "grace": "1h"},
            ]
        }
    )
    defined = Definitions.of(3, document.heartbeats)
    assert defined.watches_alerts
    assert list(defined.by_alertname) == ["Watchdog"]
    assert [h.name for h in defined.others] == ["any-dead"]

    def names(**labels: str) -> list[str]:
        return sorted(h.name for h in defined.pinged_by(labels))

    assert names(alertname="Watchdog") == ["alertmanager"]
    assert names(alertname="Watchdog", dc="eu") == ["alertmanager", "eu"]
    assert names(alertname="Other", kind="deadman") == ["any-dead"]
    assert names(alertname="Other") == []
    only_cron = Definitions.of(1, document.heartbeats[3:])
    assert not only_cron.watches_alerts


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("INCIDENTS_")]:
        monkeypatch.delenv(key)


CONFIG = """\
log_level: INFO
heartbeats:
  - name: alertmanager
    interval: 1m
    grace: 4m
    alert:
      matchers: ['alertname="Watchdog"']
  - name: backup
    interval: 1x
    grace: 0s
"""


def test_the_config_section_names_file_and_line(tmp_path: Path, clean_env: None) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    with pytest.raises(ConfigError) as raised:
        load_settings(str(path))
    assert f"{path}:9: heartbeats.1.interval: Value error, not a valid duration" in str(
        raised.value
    )
    path.write_text(CONFIG.replace("1x", "1h").replace("name: backup", "name: alertmanager"))
    with pytest.raises(ConfigError) as raised:
        load_settings(str(path))
    assert f"{path}:8: heartbeats.1.name: heartbeat 'alertmanager' is defined twice" in str(
        raised.value
    )
    path.write_text(CONFIG.replace("1x", "1h"))
    settings = load_settings(str(path))
    assert settings.heartbeats is not None
    assert [h.name for h in settings.heartbeats] == ["alertmanager", "backup"]
    assert load_settings("").heartbeats is None


def test_check_config_reports_a_bad_heartbeat(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    assert main(["check-config", str(path)]) == 2
    assert f"{path}:9: heartbeats.1.interval" in capsys.readouterr().err
    path.write_text(CONFIG.replace("1x", "1h"))
    assert main(["check-config", str(path)]) == 0
    assert '"heartbeats"' in capsys.readouterr().out


def test_the_readme_example_is_valid() -> None:
    section = (ROOT / "README.md").read_text().split("\n## Heartbeats\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"^```yaml\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    document = HeartbeatsDocument.model_validate(yaml.safe_load(blocks[0]))
    assert [h.name for h in document.heartbeats] == ["alertmanager", "nightly-backup"]
    route = yaml.safe_load(blocks[1])["route"]["routes"][0]
    assert route["matchers"] == document.heartbeats[0].alert.matchers  # type: ignore[union-attr]

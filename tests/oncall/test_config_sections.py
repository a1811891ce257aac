"""The config file's `users:` and `schedules:`: validated with the settings (file, line and
path of each problem), summarised by check-config, and shipped in examples/config.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from incidents.config import load_settings
from incidents.exceptions import ConfigError
from incidents.oncall.config_file import summary
from tests.conftest import ROOT

from .helpers import utc

GOOD = """\
users:
  - name: alice
    phone: "+15005550006"
  - name: bob
    slack_user_id: U0BOB0002
schedules:
  - name: primary
    time_zone: Europe/Berlin
    layers:
      - users: [alice, bob]
        rotation: 1w
        handoff: 2026-11-16T09:00:00
"""


def _load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    load_settings(str(path))


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('phone: "+15005550006"', 'phone: "555-0100"', ":3: users.0.phone: '555-0100' is not"),
        ("rotation: 1w", "rotation: 1month", ":11: schedules.0.layers.0.rotation: '1month'"),
        ("Europe/Berlin", "Europe/Berln", ":8: schedules.0.time_zone: 'Europe/Berln' is not an"),
        ("[alice, bob]", "[alice, eve]", ":10: schedules.0.layers.0.users.1: no user 'eve'"),
        ("name: bob", "name: alice", ":4: users.1.name: 'alice' is also the name of users[0]"),
        ("handoff: 2026", "handoff: 3026", ":12: schedules.0.layers.0.handoff: the year must"),
    ],
)
def test_problems_name_the_file_line_and_path(
    tmp_path: Path, old: str, new: str, where: str
) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, GOOD.replace(old, new, 1))
    assert f"config.yaml{where}" in caught.value.message


def test_a_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    settings = load_settings(str(path))
    assert settings.users is not None and [u.name for u in settings.users] == ["alice", "bob"]
    assert settings.schedules is not None and settings.schedules[0].layers[0].rotation == "1w"


def test_without_the_sections_the_stored_documents_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("log_level: INFO\n")
    settings = load_settings(str(path))
    assert settings.users is None and settings.schedules is None


def test_schedules_alone_are_checked_against_the_stored_users_later(tmp_path: Path) -> None:
    # Without a users section the names cannot be checked here; start-up checks them.
    _load(tmp_path, GOOD.split("schedules:")[0].replace("users:", "log_level: INFO\nusers:"))
    _load(tmp_path, "schedules:" + GOOD.split("schedules:")[1])


def test_the_summary_warns_about_gaps_in_the_coming_week(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    settings = load_settings(str(path))
    lines = summary(settings.users, settings.schedules, now=utc("2026-11-13T00:00"))
    assert lines[:2] == ["users: 2", "schedules: primary"]
    # The rotation starts on Monday 2026-11-16 09:00 in Berlin: until then nobody.
    assert lines[2:] == [
        "WARNING: schedule 'primary' has nobody on call from 2026-11-13 00:00 to "
        "2026-11-16 08:00 UTC"
    ]
    assert summary(settings.users, settings.schedules, now=utc("2026-11-20T00:00"))[2:] == []


def test_the_shipped_example_has_users_and_a_primary_schedule() -> None:
    settings = load_settings(str(ROOT / "examples" / "config.yaml"))
    assert settings.users is not None and len(settings.users) >= 2
    assert settings.schedules is not None
    assert [s.name for s in settings.schedules] == ["primary"]
    phones = [u.phone for u in settings.users if u.phone]
    assert phones and all(p.startswith("+1500555") for p in phones)

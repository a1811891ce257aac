"""Playbook files: what a broken one says (file, line, field), and that it stops the start."""

from __future__ import annotations

from pathlib import Path

import pytest

from incidents.cli import main
from incidents.exceptions import ConfigError
from incidents.playbooks.catalog import load_folder
from incidents.playbooks.settings import PlaybookSettings
from tests.conftest import make_settings
from tests.remediation.conftest import write_playbooks

GOOD = """
id: good
description: fine
triggers: [{event: incident_opened, matchers: ['severity="critical"']}]
steps:
  - name: note
    action: incident.annotate
    params: {message: "hello {{ incident.title }}"}
"""

BROKEN = """
id: broken
description: several mistakes
triggers: [{event: incident_opened, matchers: ['alertname=="x"']}]
steps:
  - name: first
    action: kubernetes.explode
    params: {}
  - name: second
    action: incident.set_status
    params: {status: sleeping}
  - name: third
    action: incident.annotate
    params: {message: "{{ incident.title "}
  - name: fourth
    action: incident.annotate
    if: steps.later.ok
    params: {message: x, colour: red}
"""


def _problems(folder: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_folder(folder, PlaybookSettings())
    return caught.value.message


def test_every_problem_of_a_broken_file_names_its_file_line_and_field(tmp_path: Path) -> None:
    folder = write_playbooks(tmp_path / "p", good=GOOD, broken=BROKEN)
    text = _problems(folder)
    path = folder / "broken.yaml"
    assert f"{path}:4: triggers[0].matchers[0]" in text
    assert f"{path}:7: steps[0].action: unknown action 'kubernetes.explode'" in text
    assert "known actions:" in text and "incident.annotate" in text
    assert (
        f"{path}:11: steps[1].params.status" in text
        and "sleeping" not in text.split("steps[1].params.status")[0]
    )
    assert f"{path}:14: steps[2].params.message: template does not compile" in text
    assert f"{path}:17: steps[3].if: the condition reads step 'later'" in text
    assert f"{path}:18: steps[3].params.colour" in text


def test_a_template_may_not_yet_fit_the_type_it_will_render_to(tmp_path: Path) -> None:
    text = GOOD.replace(
        'params: {message: "hello {{ incident.title }}"}',
        "params: {duration: '{{ incident.labels.window }}'}",
    ).replace("incident.annotate", "silence.create")
    folder = write_playbooks(tmp_path / "p", good=text)
    assert list(load_folder(folder, PlaybookSettings()).playbooks) == ["good"]


def test_two_files_with_one_id_are_refused_naming_both(tmp_path: Path) -> None:
    folder = write_playbooks(tmp_path / "p", a=GOOD, b=GOOD)
    text = _problems(folder)
    assert f"{folder / 'b.yaml'}: id: playbook id 'good' is also used by {folder / 'a.yaml'}" in (
        text
    )


def test_yaml_that_does_not_parse_names_its_line(tmp_path: Path) -> None:
    folder = write_playbooks(tmp_path / "p", bad="id: x\nsteps: [\n  - oops: {\n")
    assert f"{folder / 'bad.yaml'}:" in _problems(folder)


def test_a_broken_folder_does_not_start_the_service(tmp_path: Path, db_url: str) -> None:
    from incidents.api.app import create_app

    folder = write_playbooks(tmp_path / "p", good=GOOD, broken=BROKEN)
    with pytest.raises(ConfigError) as caught:
        create_app(make_settings(db_url, playbooks={"folder": str(folder)}))
    assert "broken.yaml:7" in caught.value.message


def test_validate_prints_the_playbooks_or_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = write_playbooks(tmp_path / "good", good=GOOD)
    assert main(["playbooks", "validate", str(good)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("good: 1 steps, triggers: incident_opened")
    assert "1 playbook(s)" in err
    bad = write_playbooks(tmp_path / "bad", broken=BROKEN)
    assert main(["playbooks", "validate", str(bad)]) == 1
    _, err = capsys.readouterr()
    assert f"{bad / 'broken.yaml'}:7: steps[0].action" in err
    monkeypatch.setenv("INCIDENTS_PLAYBOOKS__FOLDER", str(bad))
    assert main(["check-config"]) == 2
    _, err = capsys.readouterr()
    assert "broken.yaml:7" in err


def test_the_shipped_examples_are_valid() -> None:
    from tests.conftest import ROOT

    catalog = load_folder(ROOT / "examples" / "playbooks", PlaybookSettings())
    assert {"service-down", "high-error-rate", "database"} <= set(catalog.playbooks)

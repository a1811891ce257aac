"""The command lines the README shows for the operator CLI are ones the CLI takes."""

from __future__ import annotations

import re
import shlex

import pytest

from incidents.cli import build_parser
from tests.conftest import ROOT

SECTIONS = ("## Operator CLI", "## Running the whole stack with docker compose")


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found: list[str] = []
    for title in SECTIONS:
        assert f"\n{title}\n" in text, f"README.md has no {title!r} section"
        section = text.split(f"\n{title}\n", 1)[1].split("\n## ", 1)[0]
        for block in re.findall(r"^```sh\n(.*?)^```", section, re.MULTILINE | re.DOTALL):
            for line in block.splitlines():
                command = line.split("  #", 1)[0].split("|", 1)[0].strip()
                if command.startswith("incidents "):
                    found.append(command)
    return found


def test_the_readme_shows_client_commands() -> None:
    verbs = {shlex.split(c)[1] for c in readme_commands()}
    assert verbs >= {"alert", "incident", "silence", "oncall", "postmortem", "report"}


@pytest.mark.parametrize("command", readme_commands())
def test_each_readme_command_parses(command: str) -> None:
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert getattr(args, "run", None) is not None, f"{command!r} is not a client command"

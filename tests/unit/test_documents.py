"""Strict YAML and JSON documents: alias bombs, deep nesting, bounded quotes, lines."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from incidents.config import read_yaml_with_lines
from incidents.correlation.graph import ServiceGraph
from incidents.documents import (
    QUOTE_LIMIT,
    load_json,
    load_yaml,
    parse_yaml,
    quote,
)
from incidents.exceptions import ConfigError, ValidationFailed


def alias_bomb(levels: int = 9, fan_out: int = 9) -> str:
    """A "billion laughs": each level lists the previous one fan_out times."""
    lines = [f"a0: &a0 [{','.join(['lol'] * fan_out)}]"]
    for level in range(1, levels):
        refs = ",".join([f"*a{level - 1}"] * fan_out)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def graph_bomb() -> str:
    """A small graph upload whose label value is the bomb: echoing it made 312 MB."""
    return alias_bomb() + f"services:\n  - name: x\n    labels: {{k: *a{9 - 1}}}\n"


def test_an_alias_bomb_is_refused_while_composing_naming_the_line() -> None:
    text = graph_bomb()
    assert len(text) < 500
    started = time.perf_counter()
    with pytest.raises(ValidationFailed) as info:
        ServiceGraph.from_yaml(text, source="body")
    assert time.perf_counter() - started < 1.0
    error = info.value
    assert error.field == "document"
    assert "aliases expand to more than" in error.message
    # The alias that crosses the budget: level 4 adds 9 x 6,643 nodes.
    assert error.extra["line"] == 5
    assert len(error.message) < 300


def test_aliases_and_merge_keys_within_the_budget_still_work() -> None:
    text = (
        "defaults: &defaults {team: web, tier: '1'}\n"
        "services:\n"
        "  - {<<: *defaults, name: a, depends_on: [b]}\n"
        "  - {<<: *defaults, name: b}\n"
    )
    document = load_yaml(text, source="body")
    assert document.data["services"][1] == {"team": "web", "tier": "1", "name": "b"}
    _, small = parse_yaml(alias_bomb(levels=3))
    assert len(small["a2"]) == 9


def test_the_alias_budget_grows_with_the_nodes_written_out() -> None:
    # 3,000 services sharing one set of defaults add 15,000 nodes through aliases.
    text = "services:\n  - {<<: &d {team: web, tier: '1'}, name: s0}\n" + "".join(
        f"  - {{<<: *d, name: s{i}}}\n" for i in range(1, 3000)
    )
    assert len(ServiceGraph.from_yaml(text, source="body")) == 3000
    with pytest.raises(ValidationFailed, match="aliases expand"):
        load_yaml(alias_bomb(levels=5) + "pad: [" + ",".join(["0"] * 100) + "]\n", source="b")


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(ValidationFailed, match=r"line 1, column 8: alias 'a' refers to a node"):
        load_yaml("a: &a [*a]\n", source="body")


def test_deep_nesting_is_refused_not_a_crash() -> None:
    # libyaml's own composer recurses in C: this body used to kill the process (SIGSEGV).
    with pytest.raises(ValidationFailed, match="nested deeper than 64 levels"):
        ServiceGraph.from_yaml("[" * 200_000, source="body")
    with pytest.raises(ValidationFailed, match="nested deeper"):
        ServiceGraph.from_json("[" * 200_000, source="body")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("n: " + "9" * 6000 + "\n", "a value cannot be read"),
        ("t: 2001-13-45\n", "a value cannot be read"),
        ("x: *nowhere\n", "undefined alias 'nowhere'"),
        ("a: 1\n---\nb: 2\n", "found another document"),
        ("k: !!python/object:os.system x\n", "could not determine a constructor"),
    ],
)
def test_unreadable_yaml_is_a_validation_error(text: str, needle: str) -> None:
    with pytest.raises(ValidationFailed, match=needle):
        load_yaml(text, source="body")


def test_quoted_values_are_bounded_in_time_and_length() -> None:
    shared: list[object] = ["x" * 1000]
    for _ in range(30):
        shared = [shared] * 10
    started = time.perf_counter()
    text = quote(shared)
    assert time.perf_counter() - started < 0.1
    assert len(text) <= QUOTE_LIMIT
    assert len(quote("y" * 10_000)) <= QUOTE_LIMIT


def test_graph_errors_never_echo_a_huge_value() -> None:
    huge = "v" * 100_000
    doc = {
        "services": [
            {"name": "a", "labels": {"k": [huge] * 1000}, huge: 1, "depends_on": [huge]},
        ],
        huge: 1,
    }
    with pytest.raises(ValidationFailed) as info:
        ServiceGraph.from_document(doc)
    error = info.value
    assert error.extra["error_count"] == 4
    assert len(error.message) < 2000
    assert all(len(e["message"]) < 300 and len(e["field"]) < 200 for e in error.extra["errors"])


def test_validation_problems_carry_the_yaml_line() -> None:
    text = "services:\n  - name: a\n    depends_on:\n      - ghost\n  - name: b\n    owner: me\n"
    with pytest.raises(ValidationFailed) as info:
        ServiceGraph.from_yaml(text, source="g.yaml")
    lines = {e["field"]: e.get("line") for e in info.value.extra["errors"]}
    assert lines == {"services[1].owner": 6, "services[0].depends_on[0]": 4}
    assert "services[1].owner (line 6)" in info.value.message


def test_a_graph_file_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "graph.yaml"
    path.write_text("services:\n  - name: a\n    depends_on: [b\n")
    with pytest.raises(ValidationFailed, match=rf"^{path}:4:1: "):
        ServiceGraph.from_file(path)
    json_path = tmp_path / "graph.json"
    json_path.write_text('{"services": [\n  {"name": "a",}\n]}')
    with pytest.raises(ValidationFailed, match=rf"^{json_path}:2:16: "):
        ServiceGraph.from_file(json_path)


def test_json_duplicate_keys_are_refused_with_a_bounded_quote() -> None:
    key = "k" * 10_000
    with pytest.raises(ValidationFailed) as info:
        load_json(f'{{"{key}": 1, "{key}": 2}}', source="body")
    assert "duplicate key" in info.value.message
    assert len(info.value.message) < 200


def test_the_config_file_refuses_an_alias_bomb(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(alias_bomb() + "log_level: INFO\n")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"^{path}:5: invalid YAML: aliases expand"):
        read_yaml_with_lines(path)
    assert time.perf_counter() - started < 1.0

"""Service-graph documents that are wrong: every problem named, with its field or line."""

from __future__ import annotations

from typing import Any

import pytest

from incidents.correlation.graph import ServiceGraph
from incidents.exceptions import ValidationFailed
from tests.unit.test_graph import doc_of, fails, fields

# -- validation ----------------------------------------------------------------------------


def test_duplicate_names_are_named() -> None:
    error = fails(doc_of({"name": "a"}, {"name": "b"}, {"name": "a"}))
    assert fields(error) == ["services[2].name"]
    assert "'a'" in error.message and "services[0]" in error.message
    assert error.field == "services[2].name"


def test_unknown_dependencies_are_all_reported_at_once() -> None:
    error = fails(
        doc_of(
            {"name": "a", "depends_on": ["b", "missing-1"]},
            {"name": "b", "depends_on": ["missing-2"]},
        )
    )
    assert fields(error) == ["services[0].depends_on[1]", "services[1].depends_on[0]"]
    messages = [entry["message"] for entry in error.extra["errors"]]
    assert "'a'" in messages[0] and "'missing-1'" in messages[0]
    assert "'b'" in messages[1] and "'missing-2'" in messages[1]
    assert error.extra["error_count"] == 2


def test_self_dependency_is_an_error() -> None:
    error = fails(doc_of({"name": "loop", "depends_on": ["loop"]}))
    assert fields(error) == ["services[0].depends_on[0]"]
    assert "'loop' depends on itself" in error.message


def test_unknown_keys_are_named() -> None:
    error = fails(doc_of({"name": "a", "owner": "x", "dependson": []}))
    assert fields(error) == ["services[0].owner", "services[0].dependson"]
    assert "'owner'" in error.message and "'dependson'" in error.message


@pytest.mark.parametrize(
    ("doc", "field", "needle"),
    [
        ([], "document", "a list"),
        ({}, "services", "required"),
        ({"services": {"a": 1}}, "services", "must be a list"),
        ({"services": [], "extra": 1}, "extra", "'extra'"),
        ({"services": ["just-a-name"]}, "services[0]", "mapping"),
        (doc_of({"team": "x"}), "services[0].name", "required"),
        (doc_of({"name": ""}), "services[0].name", "empty"),
        (doc_of({"name": 42}), "services[0].name", "int"),
        (doc_of({"name": " padded"}), "services[0].name", "whitespace"),
        (doc_of({"name": "a", "team": 7}), "services[0].team", "'a'"),
        (doc_of({"name": "a", "tier": 1.5}), "services[0].tier", "1.5"),
        (doc_of({"name": "a", "tier": True}), "services[0].tier", "True"),
        (doc_of({"name": "a", "labels": ["x"]}), "services[0].labels", "mapping"),
        (doc_of({"name": "a", "labels": {"version": 2}}), "services[0].labels.version", "'a'"),
        (doc_of({"name": "a", "depends_on": "b"}), "services[0].depends_on", "list"),
        (doc_of({"name": "a", "depends_on": [3]}), "services[0].depends_on[0]", "3"),
        (
            doc_of({"name": "a", "depends_on": ["b", "b"]}, {"name": "b"}),
            "services[0].depends_on[1]",
            "more than once",
        ),
    ],
)
def test_bad_types_name_the_field(doc: Any, field: str, needle: str) -> None:
    error = fails(doc)
    assert field in fields(error)
    assert needle in error.message


def test_many_problems_are_capped_but_counted() -> None:
    error = fails(doc_of(*({"name": f"s{i}", "depends_on": [f"x{i}"]} for i in range(250))))
    assert error.extra["error_count"] == 250
    assert len(error.extra["errors"]) == 101
    assert "150 more" in error.extra["errors"][-1]["message"]


def test_yaml_syntax_error_names_line_and_column() -> None:
    text = "services:\n  - name: a\n    depends_on: [b\n  - name: b\n"
    with pytest.raises(ValidationFailed) as info:
        ServiceGraph.from_yaml(text, source="services.yaml")
    error = info.value
    assert "services.yaml line" in error.message
    assert error.extra["line"] >= 3
    assert "column" in error.message and error.extra["column"] >= 1


def test_yaml_duplicate_key_is_an_error() -> None:
    text = "services:\n  - name: a\n    name: b\n"
    with pytest.raises(ValidationFailed, match=r"line 3, column 5: found duplicate key 'name'"):
        ServiceGraph.from_yaml(text)


def test_yaml_empty_and_validation_errors_name_the_source() -> None:
    with pytest.raises(ValidationFailed, match="empty"):
        ServiceGraph.from_yaml("")
    with pytest.raises(ValidationFailed, match=r"g\.yaml: .*'a' depends on unknown service 'b'"):
        ServiceGraph.from_yaml("services:\n  - {name: a, depends_on: [b]}\n", source="g.yaml")


def test_json_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ValidationFailed) as info:
        ServiceGraph.from_json('{"services": [\n  {"name": "a",}\n]}')
    assert info.value.extra["line"] == 2
    assert "line 2, column" in info.value.message
    with pytest.raises(ValidationFailed, match="duplicate key 'name'"):
        ServiceGraph.from_json('{"services": [{"name": "a", "name": "b"}]}')

"""Replacing the service graph safely: empty graphs, If-Match, the log, alias bombs, OpenAPI."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from incidents.correlation.graph import ServiceGraph
from incidents.correlation.store import replace_graph
from incidents.db import create_db_engine, make_session_factory, session_scope
from incidents.exceptions import PreconditionFailed
from tests.conftest import AUTH, ROOT
from tests.unit.test_documents import graph_bomb

GRAPH = "/api/v1/services/graph"
ABC = "services:\n  - {name: a, depends_on: [b]}\n  - {name: b}\n  - {name: c, team: x}\n"


def put(client: TestClient, body: str, *, query: str = "", **headers: str) -> Any:
    return client.put(
        GRAPH + query,
        content=body.encode(),
        headers={**AUTH, "Content-Type": "application/yaml", **headers},
    )


def etag_of(client: TestClient) -> str:
    response = client.get(GRAPH, headers=AUTH)
    assert response.status_code == 200
    etag: str = response.headers["ETag"]
    return etag


# -- an empty graph ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["services: []\n", '{"services": []}'])
def test_an_empty_graph_is_refused_unless_asked_for(client: TestClient, body: str) -> None:
    assert put(client, ABC).status_code == 200
    refused = put(client, body)
    assert refused.status_code == 422, refused.text
    error = refused.json()
    assert error["field"] == "services"
    assert "allow_empty=true" in error["message"]
    assert len(client.get(GRAPH, headers=AUTH).json()["services"]) == 3

    emptied = put(client, body, query="?allow_empty=true")
    assert emptied.status_code == 200, emptied.text
    assert emptied.json()["changes"]["removed"] == {"count": 3, "names": ["a", "b", "c"]}
    assert client.get(GRAPH, headers=AUTH).json() == {"services": []}


def test_allow_empty_must_be_a_boolean(client: TestClient) -> None:
    response = put(client, "services: []\n", query="?allow_empty=maybe")
    assert response.status_code == 422
    assert response.json()["field"] == "allow_empty"


# -- If-Match ----------------------------------------------------------------------------------


def test_a_stale_etag_is_412_and_a_current_one_replaces(client: TestClient) -> None:
    first = put(client, ABC)
    stale = first.headers["ETag"]
    assert etag_of(client) == stale
    second = put(client, "services:\n  - {name: a}\n", **{"If-Match": stale})
    assert second.status_code == 200, second.text
    current = second.headers["ETag"]
    assert etag_of(client) == current

    refused = put(client, "services:\n  - {name: z}\n", **{"If-Match": stale})
    assert refused.status_code == 412, refused.text
    body = refused.json()
    assert body["error"] == "precondition_failed"
    assert body["field"] == "If-Match"
    assert body["etag"] == current
    assert [s["name"] for s in client.get(GRAPH, headers=AUTH).json()["services"]] == ["a"]

    # Any of a list matches; a weak tag never does (If-Match compares strongly).
    assert put(client, ABC, **{"If-Match": f'"nope", {current}'}).status_code == 200
    assert put(client, ABC, **{"If-Match": f"W/{etag_of(client)}"}).status_code == 412
    assert put(client, "services:\n  - {name: q}\n", **{"If-Match": "*"}).status_code == 200


def test_the_etag_of_a_never_stored_graph_matches(client: TestClient) -> None:
    response = put(client, ABC, **{"If-Match": etag_of(client)})
    assert response.status_code == 200, response.text


def test_racing_operators_with_one_etag_exactly_one_wins(pg_url: str, client_for: Any) -> None:
    client: TestClient = client_for(pg_url)
    etag = put(client, ABC).headers["ETag"]
    operators = 4
    barrier = threading.Barrier(operators)
    statuses: list[int] = []

    def operator(index: int) -> None:
        barrier.wait()
        response = put(client, f"services:\n  - {{name: op-{index}}}\n", **{"If-Match": etag})
        statuses.append(response.status_code)

    threads = [threading.Thread(target=operator, args=(i,)) for i in range(operators)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [200] + [412] * (operators - 1)


@contextmanager
def pg_sessions(url: str) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def wait_for_lock_wait(sessions: sessionmaker[Session], timeout: float = 10.0) -> None:
    """Return once another backend of this database waits on a lock."""
    deadline = time.monotonic() + timeout
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        with sessions() as probe:
            if probe.scalar(query):
                return
        time.sleep(0.01)
    raise AssertionError("the second writer never waited for the first")


def test_if_match_check_and_write_are_one_step_on_postgresql(pg_url: str) -> None:
    """The second writer read the same version while the first had not committed yet."""
    with pg_sessions(pg_url) as sessions:
        with session_scope(sessions) as session:
            replace_graph(session, ServiceGraph.from_yaml(ABC), by="setup")
        etag = ServiceGraph.from_yaml(ABC).digest
        outcome: list[object] = []

        def second_writer() -> None:
            try:
                with session_scope(sessions) as session:
                    graph = ServiceGraph.from_yaml("services:\n  - {name: second}\n")
                    outcome.append(replace_graph(session, graph, by="two", if_match=[etag]))
            except PreconditionFailed as exc:
                outcome.append(exc)

        first = sessions()
        try:
            graph = ServiceGraph.from_yaml("services:\n  - {name: first}\n")
            replace_graph(first, graph, by="one", if_match=[etag])
            thread = threading.Thread(target=second_writer)
            thread.start()
            wait_for_lock_wait(sessions)
            first.commit()
        finally:
            first.close()
        thread.join(timeout=30)
        assert len(outcome) == 1 and isinstance(outcome[0], PreconditionFailed), outcome
        with sessions() as session:
            stored = session.execute(sa.text("SELECT document FROM service_graph")).scalar_one()
        assert stored["services"][0]["name"] == "first"


# -- who replaced it, and what changed ---------------------------------------------------------


def test_every_replacement_is_logged_with_who_and_what_changed(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="incidents.correlation.store")
    assert put(client, ABC).status_code == 200
    names = [f"new-{i:02d}" for i in range(12)]
    body = "services:\n  - {name: a}\n  - {name: c, team: y}\n" + "".join(
        f"  - {{name: {n}}}\n" for n in names
    )
    response = put(client, body)
    assert response.status_code == 200, response.text
    changes = {
        "added": {"count": 12, "names": names[:10]},
        "removed": {"count": 1, "names": ["b"]},
        "changed": {"count": 2, "names": ["a", "c"]},
    }
    result = response.json()
    assert result["changes"] == changes
    assert result["services"] == 14
    assert result["previous_digest"] == ServiceGraph.from_yaml(ABC).digest

    records = [r for r in caplog.records if r.getMessage().startswith("service graph replaced")]
    assert len(records) == 2
    record: Any = records[-1]
    assert record.levelno == logging.INFO
    assert (record.by, record.via, record.client) == ("bootstrap-token", "api", "testclient")
    assert (record.added, record.removed, record.changed) == (12, 1, 2)
    assert record.added_names == names[:10] and record.removed_names == ["b"]
    assert record.digest == result["digest"]
    assert "added 12 (new-00" in record.getMessage() and "removed 1 (b)" in record.getMessage()


# -- alias bombs -------------------------------------------------------------------------------


def test_an_alias_bomb_upload_is_a_small_quick_422(client: TestClient) -> None:
    tracemalloc.start()
    try:
        started = time.perf_counter()
        response = put(client, graph_bomb())
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 422, response.text[:500]
    assert len(response.content) < 2000
    assert "aliases expand to more than" in response.json()["message"]
    assert response.json()["line"] == 5
    assert elapsed < 2.0
    assert peak < 20 * 1024 * 1024
    assert client.get(GRAPH, headers=AUTH).json() == {"services": []}


RSS_PROBE = """
import json, resource, sys
from fastapi.testclient import TestClient
from incidents.api.app import create_app
from tests.conftest import make_settings
from tests.unit.test_documents import graph_bomb
from incidents.migrate import upgrade
url = sys.argv[1]
upgrade(url)
with TestClient(create_app(make_settings(url))) as client:
    headers = {"Authorization": "Bearer test-token", "Content-Type": "application/yaml"}
    client.put("/api/v1/services/graph", content=b"services: [{name: a}]", headers=headers)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    response = client.put("/api/v1/services/graph", content=graph_bomb().encode(), headers=headers)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"status": response.status_code, "grew_kib": after - before}))
"""


def test_an_alias_bomb_leaves_the_peak_rss_where_it_was(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'rss.db'}"
    done = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == 422
    assert result["grew_kib"] < 10 * 1024, result


def test_a_deeply_nested_body_is_a_422_not_a_crash(client: TestClient) -> None:
    for body, content_type in (("[" * 300_000, "application/yaml"), ("[" * 300_000, "json")):
        response = put(client, body, **{"Content-Type": content_type})
        assert response.status_code == 422, response.text[:300]
        assert "nested deeper" in response.json()["message"]


# -- OpenAPI -----------------------------------------------------------------------------------


def test_graph_endpoints_document_their_bodies_examples_and_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    graph_path = spec["paths"]["/api/v1/services/graph"]

    put_op = graph_path["put"]
    content = put_op["requestBody"]["content"]
    assert set(content) == {"application/json", "application/yaml"}
    for media in content.values():
        assert media["schema"] == {"$ref": "#/components/schemas/GraphDocument"}
        assert media["example"]
    assert ServiceGraph.from_yaml(content["application/yaml"]["example"]) == (
        ServiceGraph.from_document(content["application/json"]["example"])
    )
    for status in ("200", "412", "422"):
        assert "$ref" in put_op["responses"][status]["content"]["application/json"]["schema"]
    assert "ETag" in put_op["responses"]["200"]["headers"]
    params = {p["name"]: p for p in put_op["parameters"]}
    assert params["allow_empty"]["in"] == "query"
    assert params["If-Match"]["in"] == "header"

    assert {"GraphDocument", "GraphService", "GraphReplaced", "GraphError", "ServiceView"} <= set(
        schemas
    )
    assert schemas["GraphService"]["properties"]["depends_on"]["description"]
    get_op = graph_path["get"]["responses"]["200"]
    assert get_op["content"]["application/json"]["schema"]["$ref"].endswith("/GraphDocument")
    one = spec["paths"]["/api/v1/services/{name}"]["get"]["responses"]
    assert one["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ServiceView")
    assert "404" in one

"""The picture's layout and escaping, without a server: roles, layers, the size cap,
cycles, well-formed SVG, and names that try to break out of Mermaid or SVG."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from incidents.correlation.graph import ServiceGraph
from incidents.postmortem.mermaid import mermaid_graph
from incidents.postmortem.model import GraphNode, Neighbourhood
from incidents.postmortem.neighbourhood import neighbourhood
from incidents.postmortem.svg import render_svg
from tests.conftest import ROOT

SVG = "{http://www.w3.org/2000/svg}"


def example() -> ServiceGraph:
    return ServiceGraph.from_file(ROOT / "examples" / "services.yaml")


def database_outage(limit: int = 40) -> Neighbourhood:
    graph = example()
    return neighbourhood(
        graph,
        affected=["database-postgres", "user-service"],
        candidates=["database-postgres", "user-service"],
        blast_radius=graph.blast_radius("database-postgres"),
        roots=["database-postgres"],
        limit=limit,
    )


def test_roles_and_layers_follow_the_dependencies() -> None:
    picture = database_outage()
    nodes = {n.service: n for n in picture.nodes}
    assert nodes["database-postgres"].role == "root_cause"
    # user-service alerts but lies above the alerting root: affected, not a candidate.
    assert nodes["user-service"].role == "affected"
    assert nodes["web-frontend"].role == "blast_radius"
    assert nodes["database-postgres"].depth == 0
    assert nodes["user-service"].depth == 1
    assert nodes["web-frontend"].depth > nodes["api-gateway"].depth > nodes["user-service"].depth
    assert picture.left_out == 0


def test_a_large_neighbourhood_is_capped_and_counted() -> None:
    picture = database_outage(limit=3)
    assert [n.service for n in picture.nodes][:2] == ["database-postgres", "user-service"]
    assert len(picture.nodes) == 3
    assert picture.left_out == len(database_outage().nodes) - 3
    drawn = {n.service for n in picture.nodes}
    assert all(e.source in drawn and e.target in drawn for e in picture.edges)


def test_a_dependency_cycle_still_gets_layers() -> None:
    graph = ServiceGraph.from_document(
        {"services": [{"name": "a", "depends_on": ["b"]}, {"name": "b", "depends_on": ["a"]}]}
    )
    picture = neighbourhood(graph, affected=["a", "b"], candidates=["a"], blast_radius=["b"])
    assert {n.depth for n in picture.nodes} <= {0, 1}
    assert "<svg" in render_svg(picture)


def test_the_svg_is_well_formed_and_marks_roles_in_words_too() -> None:
    root = ET.fromstring(render_svg(database_outage()))
    groups = {g.get("data-service"): g for g in root.iter(f"{SVG}g") if g.get("data-service")}
    db = groups["database-postgres"]
    assert db.get("data-role") == "root_cause"
    words = [t.text for t in db.iter(f"{SVG}text")]
    assert words == ["database-postgres", "ROOT CAUSE, alerting"]
    legend = "".join(root.find(f"{SVG}g[@class='legend']").itertext())  # type: ignore[union-attr]
    assert "Root cause: the most likely cause" in legend
    assert len(root.findall(f"{SVG}line")) == len(database_outage().edges)


def test_hostile_service_names_stay_text() -> None:
    name = '"]; click s0 call alert(1) <script>x</script>'
    picture = Neighbourhood(nodes=(GraphNode(name, None, "root_cause", True, False, 0),), edges=())
    root = ET.fromstring(render_svg(picture))
    [group] = [g for g in root.iter(f"{SVG}g") if g.get("data-service")]
    assert group.get("data-service") == name
    assert not any(el.tag.endswith("script") for el in root.iter())
    mermaid = mermaid_graph(picture)
    [label] = re.findall(r'^\s+s0\["(.*)"\]$', mermaid, re.M)
    assert '"' not in label and "<script" not in label and "]" not in label
    assert label.startswith("#34;#93;#59; click s0 call alert(1) #60;script#62;")

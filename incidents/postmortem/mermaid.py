"""The neighbourhood as a Mermaid flowchart: dependents above, dependencies below.

Node ids are generated (`s0`, `s1`, ...) and names go in quoted labels with Mermaid's
entity codes, so a service name can never break out of the diagram. The role is both a
class (colour) and words in the label (for readers without colour).
"""

from __future__ import annotations

from typing import Final

from incidents.postmortem.model import Neighbourhood

ROLE_WORDS: Final = {
    "root_cause": "ROOT CAUSE",
    "candidate": "candidate cause",
    "affected": "alerting",
    "blast_radius": "blast radius",
    "context": "",
}

CLASS_DEFS: Final = (
    "classDef root_cause fill:#fdd,stroke:#b00,stroke-width:4px,color:#000",
    "classDef candidate fill:#fee,stroke:#b00,stroke-width:2px,stroke-dasharray:6 3,color:#000",
    "classDef affected fill:#fec,stroke:#c60,stroke-width:2px,color:#000",
    "classDef blast_radius fill:#ffd,stroke:#990,stroke-width:1px,stroke-dasharray:3 3,color:#000",
    "classDef context fill:#fff,stroke:#888,stroke-width:1px,color:#000",
)


def mermaid_label(text: str) -> str:
    """Text safe inside a quoted Mermaid label: quotes, brackets and markup as entities."""
    out = []
    for ch in text:
        if ch.isalnum() or ch in " -_.:/,@()+":
            out.append(ch)
        else:
            out.append(f"#{ord(ch)};")
    return "".join(out)


def mermaid_graph(graph: Neighbourhood) -> str:
    """The flowchart source (without the ``` fence)."""
    ids = {node.service: f"s{n}" for n, node in enumerate(graph.nodes)}
    lines = ["flowchart TD"]
    for node in graph.nodes:
        words = [ROLE_WORDS[node.role]]
        if node.role in ("root_cause", "candidate"):
            words.append("alerting" if node.alerting else "no alert")
        if node.role != "blast_radius" and node.in_blast_radius and not node.alerting:
            words.append("blast radius")
        note = ", ".join(w for w in words if w)
        label = mermaid_label(node.service) + (f"<br/>{note}" if note else "")
        lines.append(f'    {ids[node.service]}["{label}"]')
    for edge in graph.edges:
        lines.append(f"    {ids[edge.source]} --> {ids[edge.target]}")
    lines.extend(f"    {line}" for line in CLASS_DEFS)
    by_role: dict[str, list[str]] = {}
    for node in graph.nodes:
        by_role.setdefault(node.role, []).append(ids[node.service])
    for role, members in by_role.items():
        lines.append(f"    class {','.join(members)} {role}")
    return "\n".join(lines)

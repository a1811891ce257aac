"""The neighbourhood drawn as an inline SVG, by our own code: a layered layout by
dependency depth (dependents on top, what they depend on below), with a few barycentre
sweeps to cut crossings. Each role has a colour, a border style and words in the node,
and a legend, so the picture still reads when printed in greyscale.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Final

from incidents.postmortem.model import ROLES, GraphNode, Neighbourhood
from incidents.postmortem.text import ROLE_LEGEND

CHAR_WIDTH: Final = 7.0
NODE_HEIGHT: Final = 42
MIN_WIDTH: Final = 110
GAP_X: Final = 24
GAP_Y: Final = 60
MARGIN: Final = 16
LEGEND_ROW: Final = 22
SWEEPS: Final = 4


@dataclass(frozen=True)
class Style:
    """How one role is drawn."""

    fill: str
    stroke: str
    width: float
    dash: str
    words: str


STYLES: Final = {
    "root_cause": Style("#fdd", "#b00000", 4, "", "ROOT CAUSE"),
    "candidate": Style("#fee", "#b00000", 2, "7 3", "candidate cause"),
    "affected": Style("#fec", "#c06000", 2, "", "alerting"),
    "blast_radius": Style("#ffd", "#808000", 1.5, "2 3", "blast radius"),
    "context": Style("#fff", "#888888", 1, "", ""),
}


def _width(node: GraphNode) -> float:
    return max(MIN_WIDTH, CHAR_WIDTH * len(node.service) + 20)


def _layers(graph: Neighbourhood) -> list[list[GraphNode]]:
    top = max((n.depth for n in graph.nodes), default=0)
    layers: list[list[GraphNode]] = [[] for _ in range(top + 1)]
    for node in sorted(graph.nodes, key=lambda n: (ROLES.index(n.role), n.service)):
        layers[top - node.depth].append(node)
    neighbours: dict[str, list[str]] = {n.service: [] for n in graph.nodes}
    for edge in graph.edges:
        neighbours[edge.source].append(edge.target)
        neighbours[edge.target].append(edge.source)
    for sweep in range(SWEEPS):
        order = range(1, len(layers)) if sweep % 2 == 0 else range(len(layers) - 2, -1, -1)
        for i in order:
            ref = layers[i - 1] if sweep % 2 == 0 else layers[i + 1]
            where = {n.service: k for k, n in enumerate(ref)}

            def centre(node: GraphNode, where: dict[str, int] = where) -> float:
                found = [where[s] for s in neighbours[node.service] if s in where]
                return sum(found) / len(found) if found else float("inf")

            current = {n.service: k for k, n in enumerate(layers[i])}
            layers[i].sort(key=lambda n: (centre(n), current[n.service]))
    return layers


def render_svg(graph: Neighbourhood, *, title: str = "Dependency graph") -> str:
    """The picture as an `<svg>` element (no external references)."""
    layers = _layers(graph)
    rows = [sum(_width(n) for n in layer) + GAP_X * max(0, len(layer) - 1) for layer in layers]
    legend_width = 560.0
    width = max([legend_width, *rows]) + 2 * MARGIN
    box: dict[str, tuple[float, float, float]] = {}
    for row, layer in enumerate(layers):
        x = MARGIN + (width - 2 * MARGIN - rows[row]) / 2
        y = MARGIN + row * (NODE_HEIGHT + GAP_Y)
        for node in layer:
            box[node.service] = (x, y, _width(node))
            x += _width(node) + GAP_X
    graph_height = MARGIN + len(layers) * (NODE_HEIGHT + GAP_Y) - GAP_Y
    height = graph_height + MARGIN + LEGEND_ROW * (len(ROLE_LEGEND) + 1) + MARGIN
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" role="img" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
        f'preserveAspectRatio="xMidYMin meet" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#444"/></marker></defs>',
    ]
    for edge in graph.edges:
        sx, sy, sw = box[edge.source]
        tx, ty, tw = box[edge.target]
        start_y, end_y = (sy + NODE_HEIGHT, ty) if ty > sy else (sy, ty + NODE_HEIGHT)
        parts.append(
            f'<line class="edge" x1="{sx + sw / 2:.1f}" y1="{start_y:.1f}" '
            f'x2="{tx + tw / 2:.1f}" y2="{end_y:.1f}" stroke="#444" stroke-width="1.2" '
            f'marker-end="url(#arrow)"/>'
        )
    for node in graph.nodes:
        parts.append(_node(node, *box[node.service]))
    parts.append(_legend(graph_height + MARGIN))
    parts.append("</svg>")
    return "\n".join(parts)


def _rect(x: float, y: float, w: float, h: float, style: Style, role: str) -> str:
    dash = f' stroke-dasharray="{style.dash}"' if style.dash else ""
    return (
        f'<rect class="node {role}" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
        f'rx="5" fill="{style.fill}" stroke="{style.stroke}" stroke-width="{style.width}"{dash}/>'
    )


def _node(node: GraphNode, x: float, y: float, w: float) -> str:
    style = STYLES[node.role]
    words = [style.words] if style.words else []
    if node.role in ("root_cause", "candidate"):
        words.append("alerting" if node.alerting else "no alert")
    caption = ", ".join(words)
    cx = x + w / 2
    text_y = y + (17 if caption else NODE_HEIGHT / 2 + 4)
    out = [
        f'<g data-service="{escape(node.service)}" data-role="{node.role}">',
        _rect(x, y, w, NODE_HEIGHT, style, node.role),
        f'<text x="{cx:.1f}" y="{text_y:.1f}" text-anchor="middle" '
        f'font-weight="{"bold" if node.role == "root_cause" else "normal"}">'
        f"{escape(node.service)}</text>",
    ]
    if caption:
        out.append(
            f'<text x="{cx:.1f}" y="{y + 33:.1f}" text-anchor="middle" font-size="10">'
            f"{escape(caption)}</text>"
        )
    out.append("</g>")
    return "".join(out)


def _legend(top: float) -> str:
    out = [
        f'<g class="legend"><text x="{MARGIN}" y="{top + 12:.1f}" font-weight="bold">'
        "Legend (arrows point from a service to what it depends on)</text>"
    ]
    for n, (role, title, words) in enumerate(ROLE_LEGEND, start=1):
        y = top + n * LEGEND_ROW
        out.append(_rect(MARGIN, y, 36, 16, STYLES[role], role))
        out.append(
            f'<text x="{MARGIN + 46}" y="{y + 12:.1f}"><tspan font-weight="bold">'
            f"{escape(title)}</tspan>: {escape(words)}</text>"
        )
    out.append("</g>")
    return "".join(out)

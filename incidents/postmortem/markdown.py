"""The postmortem as Markdown, with the dependency graph as a Mermaid diagram.

Everything that comes from alerts or people (titles, labels, notes) is escaped: it
cannot open a link, a heading, a table cell or raw HTML.
"""

from __future__ import annotations

from collections.abc import Iterable

from incidents.postmortem.mermaid import mermaid_graph
from incidents.postmortem.model import Postmortem, Section
from incidents.postmortem.text import ROLE_LEGEND, duration_text, key_data, other_labels, when

_PUNCTUATION = "\\`*_[]{}|#<>!"


def md(text: object) -> str:
    """Text as literal Markdown on one line: markup escaped, HTML inert."""
    value = str(text).replace("\r", " ").replace("\n", " ")
    value = value.replace("&", "&amp;")
    out = []
    for ch in value:
        if ch == "<":
            out.append("&lt;")
        elif ch == ">":
            out.append("&gt;")
        elif ch in _PUNCTUATION:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.extend("| " + " | ".join(md(c) for c in row) + " |" for row in rows)
    return lines


def _section(section: Section) -> list[str]:
    lines = [f"## {section.title}", ""]
    lines.extend(f"- {md(line)}" for line in section.prefill)
    if section.needs_author:
        if section.prefill:
            lines.append("")
        lines.append("_To be written by the incident commander._")
    return [*lines, ""]


def render_markdown(pm: Postmortem) -> str:
    """The whole postmortem as one Markdown document."""
    f, t = pm.incident, pm.times
    out = [f"# Postmortem: incident {f.id}: {md(f.title)}", ""]
    out += _table(
        ["Severity", "Status", "State", "Duration"],
        [
            [
                f.severity,
                f.status,
                f.state,
                duration_text(t.duration_seconds) + (" (ongoing)" if t.ongoing else ""),
            ]
        ],
    )
    out += ["", "## Times", ""]
    out += _table(
        ["Event", "When", "Who / span"],
        [
            ["Detection (earliest alert)", when(t.detected_at), ""],
            ["First page", when(t.first_page_at), ""],
            ["Acknowledged", when(t.acknowledged_at), t.acknowledged_by or ""],
            ["Resolved", when(t.resolved_at), t.resolved_by or ""],
            ["Time to acknowledge", "", duration_text(t.time_to_acknowledge_seconds)],
            ["Time to resolve", "", duration_text(t.time_to_resolve_seconds)],
        ],
    )
    out += ["", "## Services affected", ""]
    out += [f"- {md(s)}" for s in f.services] or ["- none recorded"]
    out += ["", "## Root-cause candidates", ""]
    out += _table(
        ["Rank", "Service", "Evidence", "Reason", "Explains"],
        [
            [
                c.rank,
                c.service,
                "inferred, no alert" if c.inferred else "alerting",
                c.reason,
                ", ".join(c.explains),
            ]
            for c in pm.root_causes
        ],
    )
    out += ["", "## Dependency graph", "", "```mermaid", mermaid_graph(pm.graph), "```", ""]
    out += [f"- **{title}**: {words}" for _, title, words in ROLE_LEGEND]
    if pm.blast_radius:
        out.append(f"- Blast radius of the root cause: {md(', '.join(pm.blast_radius))}")
    if pm.graph.left_out:
        out.append(f"- {pm.graph.left_out} more service(s) of the neighbourhood not drawn")
    out += ["", "## Why each alert joined", ""]
    out += _table(
        ["Alert", "Service", "Severity", "Started", "Ended", "Joined by", "Why", "Labels"],
        [
            [
                a.alertname,
                a.service,
                a.severity,
                when(a.starts_at),
                when(a.ends_at),
                a.action,
                a.reason,
                other_labels(a.labels),
            ]
            for a in pm.alerts
        ],
    )
    out += ["", "## Possibly related incidents", ""]
    out += [
        f"- Incident {r.id} ({md(r.status)}): {md(r.title)}; alerts that could have joined "
        f"it: {md(', '.join(r.alerts))}"
        for r in pm.related
    ] or ["- none"]
    out += ["", "## Timeline", ""]
    out += _table(
        ["Time", "Kind", "Actor", "What", "Details"],
        [[when(e.at), e.kind, e.actor, e.message, key_data(e.data)] for e in pm.timeline],
    )
    out += ["", "## Notifications", ""]
    if not pm.notifications:
        out.append("No notifications were sent.")
    for c in pm.notifications:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(c.counts.items()))
        out += [f"### {md(c.channel)} ({md(counts)})", ""]
        out += _table(
            ["Event", "Target", "Outcome", "Attempts", "Sent", "Error"],
            [
                [d.event, d.target, d.status, d.attempts, when(d.sent_at), d.error or ""]
                for d in c.deliveries
            ],
        )
        out.append("")
    out += ["", "## Escalation", ""]
    out += [
        f"- {when(s.at)}: policy {md(s.policy)}, level {s.level}, round {s.round}: "
        f"{md('; '.join(s.paged))}" + (" (policy exhausted)" if s.done else "")
        for s in pm.escalation
    ] or ["- no escalation step ran"]
    out += ["", "## Playbook runs", ""]
    if not pm.playbook_runs:
        out.append("- none")
    for r in pm.playbook_runs:
        out += [f"### {md(r.playbook)} (run {md(r.run_id)}): {md(r.status or 'unknown')}", ""]
        out += _table(
            ["Time", "Step", "Action", "Status", "Result", "Error"],
            [
                [when(s.at), s.step, s.action or "", s.status or "", s.result or "", s.error or ""]
                for s in r.steps
            ],
        )
        out.append("")
    out.append("")
    for section in pm.sections:
        out += _section(section)
    out.append(f"_Generated {when(pm.generated_at)}._")
    return "\n".join(out) + "\n"

"""The postmortem as one self-contained HTML page: inline CSS, an inline SVG, no script,
no font, image or link to fetch. It prints on A4 and Letter alike: the page margins are
set in @page and the content is fluid, table rows and figures never split across pages,
headings stay with what follows, and table headers repeat on each page.

Everything that comes from alerts or people is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Final

from incidents.postmortem.model import Postmortem, Section
from incidents.postmortem.svg import render_svg
from incidents.postmortem.text import duration_text, key_data, other_labels, when

CSS: Final = """
@page { margin: 14mm 12mm; }
:root { color: #111; background: #fff; }
body { font: 11pt/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 0 auto; padding: 16px; max-width: 1100px; }
h1 { font-size: 18pt; margin: 0 0 8px; }
h2 { font-size: 14pt; border-bottom: 1px solid #999; margin: 20px 0 8px;
     break-after: avoid; page-break-after: avoid; }
h3 { font-size: 12pt; break-after: avoid; page-break-after: avoid; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 9.5pt; }
th, td { border: 1px solid #bbb; padding: 3px 6px; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
th { background: #eee; }
thead { display: table-header-group; }
tr, figure, .keep { break-inside: avoid; page-break-inside: avoid; }
figure { margin: 8px 0; }
figure svg { max-width: 100%; height: auto; }
.facts td:first-child { width: 30%; font-weight: 600; }
.badge { display: inline-block; border: 1px solid #333; border-radius: 3px;
         padding: 0 6px; font-weight: 700; }
.todo { color: #555; font-style: italic; border-left: 3px solid #999; padding-left: 8px; }
.muted { color: #555; }
@media print {
  body { padding: 0; max-width: none; font-size: 10pt; }
  a { color: inherit; text-decoration: none; }
  h2 { break-before: auto; }
  .sections { break-before: page; page-break-before: always; }
}
"""


def h(text: object) -> str:
    """Text as HTML, escaped (quotes too)."""
    return escape(str(text), quote=True)


def _table(header: Iterable[str], rows: Iterable[Iterable[object]], cls: str = "") -> str:
    head = "".join(f"<th>{h(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{h(c)}</td>" for c in row) + "</tr>" for row in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _list(items: Iterable[str], empty: str) -> str:
    lines = [f"<li>{h(i)}</li>" for i in items]
    return f"<ul>{''.join(lines)}</ul>" if lines else f'<p class="muted">{h(empty)}</p>'


def _section(section: Section) -> str:
    out = [f'<section class="keep" id="{h(section.key)}"><h2>{h(section.title)}</h2>']
    if section.prefill:
        out.append(_list(section.prefill, ""))
    if section.needs_author:
        out.append('<p class="todo">To be written by the incident commander.</p>')
    out.append("</section>")
    return "".join(out)


def render_html(pm: Postmortem) -> str:
    """The whole postmortem as one HTML document."""
    f, t = pm.incident, pm.times
    title = f"Postmortem: incident {f.id}: {f.title}"
    body = [f"<h1>{h(title)}</h1>"]
    duration = duration_text(t.duration_seconds) + (" (ongoing)" if t.ongoing else "")
    body.append(
        f'<p><span class="badge">{h(f.severity)}</span> status {h(f.status)}, '
        f"state {h(f.state)}, duration {h(duration)}</p>"
    )
    body.append("<h2>Times</h2>")
    body.append(
        _table(
            ["Event", "When", "Who / span"],
            [
                ["Detection (earliest alert)", when(t.detected_at), ""],
                ["First page", when(t.first_page_at), ""],
                ["Acknowledged", when(t.acknowledged_at), t.acknowledged_by or ""],
                ["Resolved", when(t.resolved_at), t.resolved_by or ""],
                ["Time to acknowledge", "", duration_text(t.time_to_acknowledge_seconds)],
                ["Time to resolve", "", duration_text(t.time_to_resolve_seconds)],
            ],
            "facts",
        )
    )
    body.append("<h2>Services affected</h2>")
    body.append(_list(f.services, "None recorded."))
    body.append("<h2>Dependency graph</h2>")
    caption = "Root cause, alerting services and blast radius"
    if pm.graph.left_out:
        caption += f"; {pm.graph.left_out} more service(s) not drawn"
    body.append(
        f"<figure>{render_svg(pm.graph, title=caption)}<figcaption class='muted'>"
        f"{h(caption)}.</figcaption></figure>"
    )
    if pm.blast_radius:
        body.append(f"<p>Blast radius: {h(', '.join(pm.blast_radius))}</p>")
    body.append("<h2>Root-cause candidates</h2>")
    body.append(
        _table(
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
    )
    body.append("<h2>Why each alert joined</h2>")
    body.append(
        _table(
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
    )
    body.append("<h2>Possibly related incidents</h2>")
    body.append(
        _list(
            (
                f"Incident {r.id} ({r.status}): {r.title}; alerts that could have joined it: "
                f"{', '.join(r.alerts)}"
                for r in pm.related
            ),
            "None.",
        )
    )
    body.append("<h2>Timeline</h2>")
    body.append(
        _table(
            ["Time", "Kind", "Actor", "What", "Details"],
            [[when(e.at), e.kind, e.actor, e.message, key_data(e.data)] for e in pm.timeline],
            "timeline",
        )
    )
    body.append(_notifications(pm))
    body.append('<div class="sections">')
    body.extend(_section(s) for s in pm.sections)
    body.append("</div>")
    body.append(f'<p class="muted">Generated {h(when(pm.generated_at))}.</p>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{h(title)}</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def _notifications(pm: Postmortem) -> str:
    out = ["<h2>Notifications</h2>"]
    if not pm.notifications:
        out.append('<p class="muted">No notifications were sent.</p>')
    for c in pm.notifications:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(c.counts.items()))
        out.append(f"<h3>{h(c.channel)} ({h(counts)})</h3>")
        out.append(
            _table(
                ["Event", "Target", "Outcome", "Attempts", "Sent", "Error"],
                [
                    [d.event, d.target, d.status, d.attempts, when(d.sent_at), d.error or ""]
                    for d in c.deliveries
                ],
            )
        )
    out.append("<h2>Escalation</h2>")
    out.append(
        _list(
            (
                f"{when(s.at)}: policy {s.policy}, level {s.level}, round {s.round}: "
                f"{'; '.join(s.paged)}" + (" (policy exhausted)" if s.done else "")
                for s in pm.escalation
            ),
            "No escalation step ran.",
        )
    )
    out.append("<h2>Playbook runs</h2>")
    if not pm.playbook_runs:
        out.append('<p class="muted">None.</p>')
    for r in pm.playbook_runs:
        out.append(f"<h3>{h(r.playbook)} (run {h(r.run_id)}): {h(r.status or 'unknown')}</h3>")
        out.append(
            _table(
                ["Time", "Step", "Action", "Status", "Result", "Error"],
                [
                    [
                        when(s.at),
                        s.step,
                        s.action or "",
                        s.status or "",
                        s.result or "",
                        s.error or "",
                    ]
                    for s in r.steps
                ],
            )
        )
    return "".join(out)

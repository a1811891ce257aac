"""Postmortems: a typed view of a finished (or running) incident, and its renderings.

`view.build_postmortem(session, incident_id)` reads everything once into `model.Postmortem`;
`markdown`, `html` and `schema` turn that one view into Markdown (with a Mermaid graph),
a self-contained printable HTML page (with an inline SVG graph) and versioned JSON.
"""

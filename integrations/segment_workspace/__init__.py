"""Managing the customer's Segment workspace through its Public API (issue #11).

`services`: writes (the token, picking a source, labels, deleting a source), each validated,
audited, and never changed half-way when Segment refuses. `selectors`: reads for the pages
(the source list, the "In Segment" tab), each within a time budget. `words`: Segment's
settings in sentences. The HTTP client is integrations.segment.public_api.
"""

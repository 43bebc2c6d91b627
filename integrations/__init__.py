"""Everything about Segment, in floors: the way in (ingest), the way out (relay), the code that
knows Segment (segment), each feature's services and selectors, tasks, and pages. See
docs/architecture.md."""

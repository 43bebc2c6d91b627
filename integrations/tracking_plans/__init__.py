"""A workspace's tracking plan (Segment Protocols): rules in JSON Schema, checked at save time
(`schemas`), enforced at ingest before an event enters the log (`enforcement`), written through
`services` and read through `selectors`."""

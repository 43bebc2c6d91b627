"""The way in: the Segment-compatible HTTP API, the Python emit API, the rules an event must
meet to be accepted, ingest keys, and the record of refused events."""

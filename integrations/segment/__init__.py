"""Everything that knows real Segment: regions, the batch protocol, the tracking and Public API
clients, key checks, destination filters and FQL."""

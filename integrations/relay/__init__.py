"""The way out: the event log every accepted event enters, and its delivery to each connected
Segment source (runs, leases, the sweep, retention, counts)."""

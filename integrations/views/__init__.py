"""The workspace's pages, one module per area, each with its `urlpatterns`: Segment connections
and their Overview, Checks and Settings tabs (`connections`), a connection's Deliveries and
Attempts tabs (`usage`), its dead letters, the ingest API's keys and refused events (`ingest`),
the event debugger, historical imports, and the areas added beside them."""

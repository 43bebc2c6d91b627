"""The workspace's pages about Segment, one module per area, each with its `urlpatterns`:
connections and API keys (Settings, `connections`), a connection's Deliveries and Attempts tabs
(`usage`), its dead letters, the event debugger, historical imports."""

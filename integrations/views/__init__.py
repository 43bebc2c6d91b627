"""The workspace's pages about Segment, one module per area, each with its `urlpatterns`:
connections and API keys (Settings), a connection's deliveries, dead letters, the event
debugger, historical imports."""

"""Inbound webhooks: per-workspace endpoints that verify Standard Webhooks signatures (or a
token in the URL), map any JSON payload to Segment calls and append them to the workspace's
event log, from where they are relayed like every other event.

verification (who sent it), mapping and presets (what it becomes), receive (the request
path), services (endpoint writes, the test console, reads, retention), views (the URL
senders post to).
"""

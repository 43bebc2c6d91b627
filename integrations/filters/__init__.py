"""Destination filters per connection: saving them (services), building their FQL from a
sentence (sentence), trying one on recent events before saving (preview), and reading them
(selectors). The engine that evaluates FQL is Segment's model and lives in
integrations.segment (fql, glob, destination_filters); the relay applies it at delivery
(integrations.relay.filtering). A future integrations.tracking_plans sits beside this package.
"""

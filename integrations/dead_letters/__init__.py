"""Dead letters of a connection: choosing them, replaying them to Segment, discarding them.

- `selection`: what a person chose (`Selection`) and the reads: a connection's dead letters,
  its replays, and why it cannot replay now.
- `services`: the writes a person asks for: the dry run, queueing a replay, discarding, and
  marking replays whose worker stopped as failed.
- `replay`: the Celery task's side, which claims a queued replay and sends it.

A replay's record, lock and progress are one `DeadLetterReplay` row: created queued with the
request (a partial unique constraint allows one queued or sending replay per connection),
claimed by the task, its counts (and so `updated_at`) moved after every request to Segment.
Audit rows record who asked for what; they are never read back as state.
"""

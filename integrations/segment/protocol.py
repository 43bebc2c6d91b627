"""Segment's tracking protocol: the call types, the size limits of an event and a batch, and
what Tributary adds to a stored event on the way out."""
from __future__ import annotations

TYPES = ("identify", "track", "page", "screen", "group", "alias")
# Segment refuses an event over 32 KB as sent.
MAX_EVENT_BYTES = 32 * 1024
# What delivery adds to a stored body: `,"messageId":"<uuid>"`.
SENT_MESSAGE_ID_BYTES = len(b',"messageId":""') + 36

"""The Celery task's side of a replay: claim it, send the chosen dead letters, record the result.

A replay sends each event exactly as its first attempt did: the stored body under the
connection's messageId for it (`protocol.wire`), so Segment drops a replay of an event it
already accepted within its 24-hour deduplication window. Every request is in the attempt
log, marked as a replay.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db.models import F
from django.db.models.functions import Length
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from integrations.crypto import CredentialUnreadable
from integrations.dead_letters.selection import Selection, replay_blocker
from integrations.models import AttemptOutcome, Connection, DeadLetter, DeadLetterReplay, ReplayStatus
from integrations.relay.accounting import Sent, attempt_record
from integrations.segment import client, protocol

logger = logging.getLogger(__name__)

# A run stops sending after this long and reports the rest as not sent, to be replayed again:
# with a last batch's tries and waits it stays inside Celery's soft time limit (240 s).
RUN_BUDGET_SECONDS = 150.0
# A batch Segment answers 408/429/5xx (or not at all) is tried this many times in all.
TRIES_PER_BATCH = 3
LONGEST_WAIT_SECONDS = 10.0


def dead_letters_replay_run(*, replay_id: int) -> DeadLetterReplay | None:
    """Send a queued replay; None when there was nothing to do.

    1. claim it: one conditional UPDATE turns queued into sending, so a second run of the
       task (a message delivered twice) or a replay already marked failed sends nothing;
    2. give up, failed, if the connection cannot send now (disabled, paused, key unreadable);
    3. send the selection in log order, batch by batch, writing the counts after every
       request (they move `updated_at`, the heartbeat that tells a live run from a dead one);
    4. end done, or failed with the reason when it stopped before trying everything.
    """
    now = timezone.now()
    claimed = DeadLetterReplay.objects.filter(pk=replay_id, status=ReplayStatus.QUEUED).update(
        status=ReplayStatus.SENDING, started_at=now, updated_at=now)
    record = DeadLetterReplay.objects.select_related("connection__workspace").filter(pk=replay_id).first()
    if not claimed or record is None:
        logger.info("dead_letters.replay_not_claimed", extra={"replay_id": replay_id})
        return None
    run = Run(record)
    blocker = replay_blocker(record.connection)
    if blocker:
        return run.end(blocker)
    _send(run)
    return run.end(run.why)


@dataclass
class Run:
    """One run of a replay: its row and the counts so far."""

    record: DeadLetterReplay
    accepted: int = 0
    refused: int = 0
    why: str = ""  # set when the run stops before trying everything
    deadline: float = field(default_factory=lambda: time.monotonic() + RUN_BUDGET_SECONDS)

    @property
    def connection(self) -> Connection:
        return self.record.connection

    def report(self) -> None:
        """Write the counts so far, which is also the heartbeat. A replay that is no longer
        sending was marked failed meanwhile (this worker looked dead): stop rather than go on
        beside whatever runs next."""
        still_ours = DeadLetterReplay.objects.filter(pk=self.record.pk, status=ReplayStatus.SENDING).update(
            accepted=self.accepted, refused=self.refused, updated_at=timezone.now())
        if not still_ours and not self.why:
            self.why = "The replay was marked failed while it ran; run the replay again."

    def end(self, failure: str = "") -> DeadLetterReplay:
        not_sent = max(0, self.record.total - self.accepted - self.refused) if failure else 0
        now = timezone.now()
        ended = DeadLetterReplay.objects.filter(pk=self.record.pk, status=ReplayStatus.SENDING).update(
            status=ReplayStatus.FAILED if failure else ReplayStatus.DONE, accepted=self.accepted,
            refused=self.refused, not_sent=not_sent, failure=failure[:300], finished_at=now, updated_at=now)
        self.record.refresh_from_db()
        logger.info("dead_letters.replayed", extra={
            "connection_id": self.connection.pk, "replay_id": self.record.pk, "status": self.record.status,
            "accepted": self.accepted, "refused": self.refused, "not_sent": self.record.not_sent,
            "recorded": bool(ended)})
        return self.record


@sensitive_variables("write_key")
def _send(run: Run) -> None:
    try:
        write_key = run.connection.write_key()
    except CredentialUnreadable:
        run.why = "The write key cannot be decrypted: paste it again on the connection's page, then replay."
        return
    selection = Selection.from_json(run.record.selection)
    for batch in _batches(run.connection, selection, run.record.total):
        if time.monotonic() > run.deadline:
            run.why = "The replay ran out of time. Replay again for the rest."
        if run.why:
            return
        _send_batch(run, write_key, batch)


@dataclass
class Letter:
    """A dead letter's event as delivery sends it (`protocol.wire`)."""

    dead_letter_id: int
    seq: int
    wire: bytes


def _batches(connection: Connection, selection: Selection, limit: int) -> Iterator[list[Letter]]:
    """The selection in log order, cut like delivery cuts (`protocol.batch_cut`) on the sizes
    as sent. Sizes are read first, bodies only for the rows of one batch."""
    namespace = protocol.connection_namespace(connection.pk)
    chosen = selection.apply(DeadLetter.objects.filter(connection=connection))
    after, left = 0, limit
    while left > 0:
        sizes = list(chosen.filter(seq__gt=after).order_by("seq").annotate(length=Length("body"))
                     .values_list("pk", "length")[:min(protocol.MAX_BATCH_EVENTS, left)])
        if not sizes:
            return
        cut = protocol.batch_cut((length or 0) + protocol.SENT_MESSAGE_ID_BYTES for _pk, length in sizes)
        rows = DeadLetter.objects.filter(pk__in=[pk for pk, _length in sizes[:cut]]).order_by("seq").values_list(
            "pk", "seq", "message_id", "body")
        batch = [Letter(pk, seq, protocol.wire(bytes(body), protocol.sent_message_id(namespace, message_id)))
                 for pk, seq, message_id, body in rows]
        if not batch:  # discarded meanwhile
            return
        yield batch
        after, left = batch[-1].seq, left - len(batch)


@sensitive_variables("write_key")
def _send_batch(run: Run, write_key: str, batch: list[Letter]) -> None:
    """Send one batch (split on a 400 as delivery splits, so only the refused events are
    refused), record what Segment said on each dead letter and report the counts."""
    answer = _post(run.connection, write_key, batch)
    verdict = protocol.outcome(answer.status if answer is not None else None)
    if verdict == AttemptOutcome.REJECTED and len(batch) > 1:
        middle = len(batch) // 2
        for half in (batch[:middle], batch[middle:]):
            if not run.why:
                _send_batch(run, write_key, half)
        return
    if verdict == AttemptOutcome.DELIVERED:
        _mark(batch, accepted=True)
        run.accepted += len(batch)
    else:
        status = answer.status if answer is not None else None
        reply = answer.body if answer is not None else "No answer from Segment."
        _mark(batch, accepted=False, status=status, reply=reply)
        run.refused += len(batch)
        if verdict != AttemptOutcome.REJECTED:
            # Not this batch's content but Segment or the key: stop rather than insist.
            run.why = (f"Segment answered {status or 'nothing'} and the replay stopped there. "
                       "Replay again later for the rest.")
    run.report()


@sensitive_variables("write_key")
def _post(connection: Connection, write_key: str, batch: list[Letter]) -> client.Answer | None:
    """One request, tried again after 408/429/5xx or no answer (a short wait, Segment's
    Retry-After when it gives one); every try is a recorded replay attempt."""
    body = protocol.batch_body(letter.wire for letter in batch)
    sent = Sent(batch[0].seq, batch[-1].seq, len(batch), len(body))
    answer: client.Answer | None = None
    for attempt in range(1, TRIES_PER_BATCH + 1):
        started_at, started = timezone.now(), time.monotonic()
        try:
            answer = client.post(connection.region, write_key, "batch", body)
        except client.SegmentUnreachable as unreachable:
            answer = None
            reply = f"No answer from Segment ({unreachable.reason})."
        else:
            reply = answer.body
        status = answer.status if answer is not None else None
        verdict = protocol.outcome(status)
        attempt_record(connection_id=connection.pk, sent=sent, started_at=started_at,
                       duration_ms=round((time.monotonic() - started) * 1000), status=status,
                       outcome=verdict, reply=reply, attempt=attempt, replay=True)
        if verdict != AttemptOutcome.RETRYING or attempt == TRIES_PER_BATCH:
            break
        retry_after = answer.retry_after if answer is not None else None
        time.sleep(min(protocol.backoff_seconds(attempt, retry_after), LONGEST_WAIT_SECONDS))
    return answer


def _mark(batch: list[Letter], *, accepted: bool, status: int | None = None, reply: str = "") -> None:
    """Accepted: replayed now, kept as a record. Refused: keeps Segment's new answer."""
    ids = [letter.dead_letter_id for letter in batch]
    changes: dict[str, Any] = {"replays": F("replays") + 1}
    if accepted:
        changes["replayed_at"] = timezone.now()
    else:
        changes.update(status=status, response=reply[:300])
    DeadLetter.objects.filter(pk__in=ids).update(**changes)

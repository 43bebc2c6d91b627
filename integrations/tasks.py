"""Celery tasks: the one module the worker autodiscovers. Each takes ids, never keys, calls the
function that does the work, and is safe to run twice.

This is the floor above the services, the relay, imports and notifications (ARCH.md): it imports
them, and they never import it. They queue these tasks by name through `integrations.enqueue`,
whose constants are the names registered here; beat schedules (config/celery_app.py) and messages
already in the broker use the same names, so none may change.
"""
from __future__ import annotations

from celery import shared_task

from integrations import enqueue, imports, notifications, services
from integrations.dead_letters.replay import dead_letters_replay_run
from integrations.relay.delivery import connection_deliver
from integrations.relay.retention import deliveries_trim, events_expire, events_trim
from integrations.relay.sweeper import connections_sweep
from integrations.segment_workspace.services import public_api_calls_trim
from integrations.tracking_plans.forwarding import violations_forward, violations_forward_sweep
from integrations.tracking_plans.services import tracking_plan_expire
from integrations.webhooks.services import webhook_receipts_trim


@shared_task(name=enqueue.VERIFY_CONNECTION, acks_late=True, reject_on_worker_lost=True)
def verify_connection(verification_id: int) -> None:
    services.verification_run(verification_id=verification_id)


@shared_task(name="integrations.tasks.verify_all_connections")
def verify_all_connections() -> None:
    services.verifications_schedule_daily()


@shared_task(name="integrations.tasks.retry_unfinished_checks")
def retry_unfinished_checks() -> None:
    """Re-check connections whose events wait for a verdict a check could not reach."""
    services.verifications_retry_unfinished()


@shared_task(name="integrations.tasks.expire_stale_verifications")
def expire_stale_verifications() -> None:
    services.verifications_expire_stale()


@shared_task(name=enqueue.DELIVER_CONNECTION, acks_late=True, reject_on_worker_lost=True)
def deliver_connection(connection_id: int) -> None:
    """Deliver the connection's backlog. Idempotent: a second run finds the lease taken or
    the position already moved, and messageIds are stable across re-sends."""
    connection_deliver(connection_id=connection_id)


@shared_task(name="integrations.tasks.sweep_relay")
def sweep_relay() -> None:
    """Wake connections with a backlog whose wake-up was lost (broker flushed, worker killed)."""
    connections_sweep()


@shared_task(name=enqueue.NOTIFY_CONNECTION_PAUSED, acks_late=True, reject_on_worker_lost=True)
def notify_connection_paused(connection_id: int) -> None:
    """E-mail the owners and admins that delivery to a source stopped, and why."""
    notifications.send_paused_email(connection_id=connection_id)


@shared_task(name="integrations.tasks.relay_retention")
def relay_retention() -> None:
    """Hourly: dead-letter what waited past the maximum age, then trim the delivered log and
    the webhook endpoints' inbound logs."""
    events_expire()
    events_trim()
    deliveries_trim()
    webhook_receipts_trim()
    tracking_plan_expire()  # blocked events past 30 days, violation counts past 8
    violations_forward_sweep()  # violations a lost wake-up left unsent


@shared_task(name="integrations.tasks.trim_public_api_calls")
def trim_public_api_calls() -> None:
    """Daily: forget the Segment Public API calls operators no longer need to see."""
    public_api_calls_trim()


@shared_task(name=enqueue.REPLAY_DEAD_LETTERS, acks_late=True, reject_on_worker_lost=True)
def replay_dead_letters(replay_id: int) -> None:
    """Send the dead letters a person chose to replay (a DeadLetterReplay row says which).
    Safe twice: only the run that claims the queued replay sends, and re-sent events keep
    their messageIds."""
    dead_letters_replay_run(replay_id=replay_id)


@shared_task(name=enqueue.CHECK_IMPORT, acks_late=True, reject_on_worker_lost=True)
def check_import(job_id: int) -> None:
    """Check (a slice of) an import file line by line; re-queues itself until the file is done."""
    imports.import_check(job_id=job_id)


@shared_task(name=enqueue.RUN_IMPORT, acks_late=True, reject_on_worker_lost=True)
def run_import(job_id: int) -> None:
    """Append (a slice of) an import's valid lines to the log, chunk by chunk, from where it stopped."""
    imports.import_run(job_id=job_id)


@shared_task(name="integrations.tasks.sweep_imports")
def sweep_imports() -> None:
    """Resume imports whose worker died; end stale ones; delete old reports and left-over files."""
    imports.imports_sweep()


@shared_task(name="integrations.tasks.check_delivery_notices")
def check_delivery_notices() -> None:
    """Every minute: e-mail owners and admins about dead letters past the threshold and about
    connections delivering again after a pause or a long failure (each told once, by audit row)."""
    notifications.delivery_notices_check()


@shared_task(name=enqueue.SEND_DELIVERY_NOTICE, acks_late=True, reject_on_worker_lost=True)
def send_delivery_notice(audit_event_id: int) -> None:
    """Send the e-mail an audit row (dead letters notified, recovery notified) decided on."""
    notifications.send_delivery_notice(audit_event_id=audit_event_id)


@shared_task(name=enqueue.FORWARD_VIOLATIONS, acks_late=True, reject_on_worker_lost=True)
def forward_violations(connection_id: int) -> None:
    """Send the tracking plan's waiting `Violation Generated` events to the connection."""
    violations_forward(connection_id=connection_id)

"""Celery tasks for connections. They take ids, never keys, and are safe to run twice."""
from __future__ import annotations

from celery import shared_task

from integrations import services


@shared_task(acks_late=True, reject_on_worker_lost=True)
def verify_connection(verification_id: int) -> None:
    services.verification_run(verification_id=verification_id)


@shared_task
def verify_all_connections() -> None:
    services.verifications_schedule_daily()


@shared_task
def retry_unfinished_checks() -> None:
    """Re-check connections whose events wait for a verdict a check could not reach."""
    services.verifications_retry_unfinished()


@shared_task
def expire_stale_verifications() -> None:
    services.verifications_expire_stale()


@shared_task(acks_late=True, reject_on_worker_lost=True)
def deliver_connection(connection_id: int) -> None:
    """Deliver the connection's backlog. Idempotent: a second run finds the lease taken or
    the position already moved, and messageIds are stable across re-sends."""
    from integrations.relay.delivery import connection_deliver

    connection_deliver(connection_id=connection_id)


@shared_task
def sweep_relay() -> None:
    """Wake connections with a backlog whose wake-up was lost (broker flushed, worker killed)."""
    from integrations.relay.sweeper import connections_sweep

    connections_sweep()


@shared_task(acks_late=True, reject_on_worker_lost=True)
def notify_connection_paused(connection_id: int) -> None:
    """E-mail the owners and admins that delivery to a source stopped, and why."""
    from integrations.notifications import send_paused_email

    send_paused_email(connection_id=connection_id)


@shared_task
def relay_retention() -> None:
    """Hourly: dead-letter what waited past the maximum age, then trim the delivered log."""
    from integrations.relay.retention import deliveries_trim, events_expire, events_trim

    events_expire()
    events_trim()
    deliveries_trim()


@shared_task(acks_late=True, reject_on_worker_lost=True)
def replay_dead_letters(replay_id: int) -> None:
    """Send the dead letters a person chose to replay (a DeadLetterReplay row says which).
    Safe twice: only the run that claims the queued replay sends, and re-sent events keep
    their messageIds."""
    from integrations.dead_letters.replay import dead_letters_replay_run

    dead_letters_replay_run(replay_id=replay_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def check_import(job_id: int) -> None:
    """Check (a slice of) an import file line by line; re-queues itself until the file is done."""
    from integrations.imports import import_check

    import_check(job_id=job_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_import(job_id: int) -> None:
    """Append (a slice of) an import's valid lines to the log, chunk by chunk, from where it stopped."""
    from integrations.imports import import_run

    import_run(job_id=job_id)


@shared_task
def sweep_imports() -> None:
    """Resume imports whose worker died; end stale ones; delete old reports and left-over files."""
    from integrations.imports import imports_sweep

    imports_sweep()


@shared_task
def check_delivery_notices() -> None:
    """Every minute: e-mail owners and admins about dead letters past the threshold and about
    connections delivering again after a pause or a long failure (each told once, by audit row)."""
    from integrations.notifications import delivery_notices_check

    delivery_notices_check()


@shared_task(acks_late=True, reject_on_worker_lost=True)
def send_delivery_notice(audit_event_id: int) -> None:
    """Send the e-mail an audit row (dead letters notified, recovery notified) decided on."""
    from integrations.notifications import send_delivery_notice as send

    send(audit_event_id=audit_event_id)

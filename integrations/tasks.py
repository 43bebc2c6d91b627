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
def expire_stale_verifications() -> None:
    services.verifications_expire_stale()

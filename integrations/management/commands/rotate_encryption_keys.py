"""Re-encrypt every stored write key and Segment Public API token under the first FIELD_ENCRYPTION_KEYS key.

Works in committed batches, so it can be stopped and run again: each run only touches values
not yet under the first key, and a second run finds nothing to do. A value no key can decrypt
stays as it is and its connection is paused as unreadable through the service (audited per
connection, its owners e-mailed), as a check or the relay would.
"""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.audit import Actor, audit_record
from accounts.models import AuditAction
from integrations import crypto
from integrations.models import Connection
from integrations.segment_workspace.services import segment_tokens_reencrypt
from integrations.services import connection_key_reencrypt

BATCH = 200


class Command(BaseCommand):
    help = "Re-encrypt stored write keys under the first key of FIELD_ENCRYPTION_KEYS (resumable)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--batch-size", type=int, default=BATCH)

    def handle(self, *args: Any, batch_size: int, **options: Any) -> None:
        primary = crypto.primary_key_id()
        pending = Connection.objects.exclude(write_key_key_id=primary)
        total = pending.count()
        self.stdout.write(f"{total} value(s) to re-encrypt under key {primary}.")
        done = unreadable = 0
        last_pk = 0
        while True:
            batch_pks = list(pending.filter(pk__gt=last_pk).order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not batch_pks:
                break
            moved, failed = self._rotate(batch_pks, primary)
            done, unreadable, last_pk = done + moved, unreadable + failed, batch_pks[-1]
            self.stdout.write(f"  {done + unreadable}/{total} processed ({done} re-encrypted, {unreadable} unreadable)")
        tokens_done, tokens_unreadable = segment_tokens_reencrypt()
        self.stdout.write(f"Segment Public API tokens: {tokens_done} re-encrypted, {tokens_unreadable} unreadable.")
        audit_record(actor=Actor.system(), action=AuditAction.KEYS_ROTATED, details={
            "primary_key_id": primary, "re_encrypted": done, "unreadable": unreadable,
            "segment_tokens_re_encrypted": tokens_done, "segment_tokens_unreadable": tokens_unreadable})
        self.stdout.write(self.style.SUCCESS(f"Done: {done} re-encrypted, {unreadable} unreadable."))
        if unreadable:
            self.stdout.write("Unreadable values are marked on their connections: their owners must paste the key again.")

    def _rotate(self, pks: list[int], primary: str) -> tuple[int, int]:
        moved = failed = 0
        with transaction.atomic():
            for connection in Connection.objects.select_for_update().filter(pk__in=pks).exclude(
                write_key_key_id=primary
            ):
                if connection_key_reencrypt(connection=connection):
                    moved += 1
                else:
                    failed += 1
        return moved, failed

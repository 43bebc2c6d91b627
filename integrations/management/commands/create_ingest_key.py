"""Create an ingest key for a workspace and print it, for scripts and deployments:

    KEY=$(python manage.py create_ingest_key --workspace acme --name Production)

Only the key goes to stdout, so it can be captured; it is audited with the system as actor.
"""
from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.audit import Actor
from accounts.models import Workspace
from integrations.ingest.keys import ingest_key_create


class Command(BaseCommand):
    help = "Create an ingest key for a workspace and print it (the only time it is shown)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--workspace", required=True, metavar="SLUG", help="The workspace's slug.")
        parser.add_argument("--name", required=True, help="What sends with the key, e.g. Production.")

    def handle(self, *args: Any, workspace: str, name: str, **options: Any) -> None:
        target = Workspace.objects.filter(slug=workspace).first()
        if target is None:
            raise CommandError(f"No workspace has the slug “{workspace}”.")
        try:
            _, key = ingest_key_create(actor=Actor.system(), workspace=target, name=name)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(key)

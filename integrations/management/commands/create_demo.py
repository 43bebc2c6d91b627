"""Create (or reuse) the demo login used by `make run`, with its connection, and print it.

It lives with integrations, not accounts, because it also connects a source: accounts never
imports integrations (the import contracts in pyproject.toml)."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts import services
from accounts.audit import Actor
from accounts.models import Membership, User
from integrations.services import connection_create

DEMO_EMAIL = "demo@tributary.localhost"
DEMO_PASSWORD = "tributary-demo"  # local demo only; `make run` never runs in production
DEMO_WORKSPACE = "Acme Experiments"
# Registered with the local emulator by Procfile.dev and `make emulator`; any other key is
# "unknown to Segment".
DEMO_KEYS = {
    "us": "demoUSproductionWriteKey2026",
    "eu": "demoEUstagingWriteKey2026",
}
# Segment Public API tokens the emulator knows (Procfile.dev, `make emulator`): the EU owner's picks
# the EU source; the read-only one plays a token without Source Admin (Segment withholds write
# keys); the US owner's shows the connected US source "In Segment".
DEMO_PUBLIC_API_TOKEN = "demoSegmentPublicApiToken2026"
DEMO_READ_ONLY_PUBLIC_API_TOKEN = "demoReadOnlyPublicApiToken2026"
DEMO_US_PUBLIC_API_TOKEN = "demoSegmentPublicApiTokenUS2026"


class Command(BaseCommand):
    help = "Create the demo user and workspace if missing, then print the login."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            user = User.objects.filter(email=DEMO_EMAIL).first()
            if user is None:
                user = services.user_sign_up(
                    actor=Actor.system(), email=DEMO_EMAIL, password=DEMO_PASSWORD,
                    full_name="Demo Admin", workspace_name=DEMO_WORKSPACE,
                )
                user.is_staff = user.is_superuser = True  # the demo admin may open /admin/ too
                user.save(update_fields=["is_staff", "is_superuser"])
                membership = Membership.objects.select_related("workspace").get(user=user)
                # Checked by the worker as soon as it starts, against the emulator.
                connection_create(actor=Actor(user=user), workspace=membership.workspace,
                                  name="Production", region="us", write_key=DEMO_KEYS["us"])
        workspace = Membership.objects.filter(user=user).select_related("workspace").first()
        slug = workspace.workspace.slug if workspace else "?"
        # SITE_URL is where the web answers (runserver's address unless it is set otherwise).
        self.stdout.write(
            f"\n  Tributary is starting on {settings.SITE_URL}\n"
            f"  Demo login: {DEMO_EMAIL} / {DEMO_PASSWORD}  (workspace: {slug})\n"
            f"  Operator admin: {settings.SITE_URL}/admin/ with the same login\n"
            f"  Try connecting the emulator's EU source: write key {DEMO_KEYS['eu']}, region EU\n"
            "  (any other key plays a key Segment does not know)\n"
            f"  Segment workspace: paste the Public API token {DEMO_PUBLIC_API_TOKEN} (region EU) under\n"
            "  Integrations → Segment workspace, then Connect Segment picks the EU source\n"
            f"  ({DEMO_READ_ONLY_PUBLIC_API_TOKEN}, EU, lacks Source Admin; {DEMO_US_PUBLIC_API_TOKEN}, US,\n"
            "  shows the connected Production source In Segment)\n"
        )

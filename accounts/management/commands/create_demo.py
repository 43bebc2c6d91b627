"""Create (or reuse) the demo login used by `make run`, and print it."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts import services
from accounts.audit import Actor
from accounts.models import Membership, User

DEMO_EMAIL = "demo@tributary.localhost"
DEMO_PASSWORD = "tributary-demo"  # local demo only; `make run` never runs in production
DEMO_WORKSPACE = "Acme Experiments"


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
        workspace = Membership.objects.filter(user=user).select_related("workspace").first()
        slug = workspace.workspace.slug if workspace else "?"
        self.stdout.write(
            "\n  Tributary is starting on http://127.0.0.1:8000\n"
            f"  Demo login: {DEMO_EMAIL} / {DEMO_PASSWORD}  (workspace: {slug})\n"
            "  Operator admin: http://127.0.0.1:8000/admin/ with the same login\n"
        )

"""Emit sample A/B-testing events into a workspace, to watch them reach Segment (the emulator)."""
from __future__ import annotations

import random
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import Workspace
from integrations.ingest import emit

VARIATIONS = [("a", "Control"), ("b", "Blue button")]


class Command(BaseCommand):
    help = "Emit sample Experiment Viewed / Conversion Triggered events (with identifies) into a workspace."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--workspace", required=True, help="the workspace's slug")
        parser.add_argument("--visitors", type=int, default=50)

    def handle(self, *args: Any, workspace: str, visitors: int, **options: Any) -> None:
        target = Workspace.objects.filter(slug=workspace).first()
        if target is None:
            raise CommandError(f"No workspace with slug {workspace!r}.")
        stored = 0
        with transaction.atomic():
            for n in range(visitors):
                stored += self._visitor(target, f"demo-visitor-{n}")
        self.stdout.write(f"Stored {stored} events for {visitors} visitors in {target.name}; "
                          "the worker is delivering them to every connected source.")

    def _visitor(self, workspace: Workspace, visitor: str) -> int:
        variation_id, variation_name = random.choice(VARIATIONS)  # noqa: S311
        stored = int(emit.identify(workspace, anonymous_id=visitor, traits={"plan": "trial"},
                                    dedupe_key=f"identify:{visitor}"))
        stored += emit.experiment_viewed(workspace, anonymous_id=visitor, experiment_id="checkout-2026",
                                          experiment_name="Checkout button", variation_id=variation_id,
                                          variation_name=variation_name)
        if random.random() < 0.3:  # noqa: S311
            stored += emit.conversion_triggered(workspace, anonymous_id=visitor, conversion_id="purchase",
                                                 conversion_type="purchase", origin_url="https://shop.example/cart",
                                                 once_per_visitor=True)
        return stored

"""A connection's deliveries: health, backlog, counts, latency, the 30-day chart and the attempt log."""
from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_GET

from accounts.permissions import workspace_view


@workspace_view()
@require_GET
def connection_attempts(request: HttpRequest, pk: int) -> HttpResponse:
    raise Http404("Not built yet.")


urlpatterns: list[URLPattern] = [
    path("settings/integrations/segment/<int:pk>/attempts/", connection_attempts, name="connection_attempts"),
]

"""Dead letters of a connection: each with its reason; replay a selection or a filter, or discard."""
from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_GET

from accounts.permissions import workspace_view


@workspace_view()
@require_GET
def dead_letters(request: HttpRequest, pk: int) -> HttpResponse:
    raise Http404("Not built yet.")


urlpatterns: list[URLPattern] = [
    path("settings/integrations/segment/<int:pk>/dead-letters/", dead_letters, name="dead_letters"),
]

"""Historical imports: upload a JSONL or CSV file of past events, check it, import it with progress."""
from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_GET

from accounts.permissions import workspace_view


@workspace_view()
@require_GET
def imports(request: HttpRequest) -> HttpResponse:
    raise Http404("Not built yet.")


urlpatterns: list[URLPattern] = [
    path("imports/", imports, name="imports"),
]

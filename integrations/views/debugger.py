"""The event debugger: the workspace's latest events as they arrive, and what each connection sent."""
from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_GET

from accounts.permissions import workspace_view


@workspace_view()
@require_GET
def debugger(request: HttpRequest) -> HttpResponse:
    raise Http404("Not built yet.")


urlpatterns: list[URLPattern] = [
    path("debugger/", debugger, name="debugger"),
]

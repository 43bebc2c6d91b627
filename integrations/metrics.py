"""`/metrics`: the relay's counters in Prometheus' text format, for operators only."""
from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    raise Http404("Not built yet.")

"""Workspace pages for Segment connections and ingest API keys.

The connection and ingest-key features arrive with their own issues; until then these
pages say what will live here, so the navigation never leads to a dead end.
"""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.permissions import workspace_view


@workspace_view()
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "integrations/index.html", {"nav": "integrations"})


@workspace_view()
def api_keys(request: HttpRequest) -> HttpResponse:
    return render(request, "integrations/api_keys.html", {"nav": "api_keys"})

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from accounts import views as account_views
from accounts.urls import workspace_urlpatterns
from integrations import metrics
from integrations.ingest import api as ingest_api
from integrations.urls import receive_urlpatterns as webhook_receive_urlpatterns

admin.site.site_header = "Tributary operations"
admin.site.site_title = "Tributary admin"
admin.site.index_title = "Operations"

urlpatterns = [
    path("", account_views.home, name="home"),
    path("healthz", account_views.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("account/", include("accounts.urls")),
    path("workspaces/new/", account_views.workspace_create, name="workspace_create"),
    path("w/<slug:slug>/", include(workspace_urlpatterns)),
    path("w/<slug:slug>/", include("integrations.urls")),
    path("admin/", admin.site.urls),
    # The Segment-compatible ingest API, at the paths Segment's libraries use.
    path("v1/<str:call>", ingest_api.ingest, name="ingest"),
    *webhook_receive_urlpatterns,
]

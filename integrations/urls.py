from __future__ import annotations

from django.urls import path

from integrations.views import connections as views
from integrations.views import (
    dead_letters,
    debugger,
    filters,
    imports,
    ingest,
    segment_workspace,
    tracking_plans,
    usage,
    webhooks,
)
from integrations.webhooks import views as webhook_receive

app_name = "integrations"

urlpatterns = [
    path("settings/integrations/", views.index, name="index"),
    path("settings/integrations/segment/new/", views.connection_create, name="connection_create"),
    path("settings/integrations/segment/<int:pk>/", views.connection_detail, name="connection"),
    path("settings/integrations/attention/", views.attention, name="attention"),
    path("settings/integrations/segment/<int:pk>/state/", views.connection_state, name="connection_state"),
    path("settings/integrations/segment/<int:pk>/checks/", views.connection_checks, name="connection_checks"),
    path("settings/integrations/segment/<int:pk>/settings/", views.connection_settings, name="connection_settings"),
    path("settings/integrations/segment/<int:pk>/region/", views.connection_region, name="connection_region"),
    path("settings/integrations/segment/<int:pk>/status/", views.connection_status, name="connection_status"),
    path("settings/integrations/segment/<int:pk>/check/", views.connection_check, name="connection_check"),
    path("settings/integrations/segment/<int:pk>/retry/", views.connection_retry, name="connection_retry"),
    path("settings/integrations/segment/<int:pk>/rename/", views.connection_rename, name="connection_rename"),
    path("settings/integrations/segment/<int:pk>/key/", views.connection_replace_key, name="connection_key"),
    path("settings/integrations/segment/<int:pk>/enabled/", views.connection_enabled, name="connection_enabled"),
    path("settings/integrations/segment/<int:pk>/delete/", views.connection_delete, name="connection_delete"),
]

# Each area's pages keep their routes next to their views.
urlpatterns += usage.urlpatterns + dead_letters.urlpatterns + debugger.urlpatterns + imports.urlpatterns
urlpatterns += ingest.urlpatterns
urlpatterns += webhooks.urlpatterns
urlpatterns += filters.urlpatterns
urlpatterns += segment_workspace.urlpatterns
urlpatterns += tracking_plans.urlpatterns

# Where products post webhooks: outside the workspace's signed-in area (config/urls.py puts
# them at the root), CSRF-exempt; the sender proves itself by signature or URL token.
receive_urlpatterns = [
    path("webhooks/in/<str:public_id>", webhook_receive.receive, name="webhook_receive"),
    path("webhooks/in/<str:public_id>/<str:token>", webhook_receive.receive, name="webhook_receive_token"),
]

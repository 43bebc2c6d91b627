from __future__ import annotations

from django.urls import path

from integrations import views

app_name = "integrations"

urlpatterns = [
    path("settings/integrations/", views.index, name="index"),
    path("settings/api-keys/", views.api_keys, name="api_keys"),
]

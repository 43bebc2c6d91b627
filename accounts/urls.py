from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import TemplateView

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("signup/sent/", TemplateView.as_view(template_name="accounts/signup_sent.html"), name="signup_sent"),
    path("signup/confirm/<str:token>/", views.signup_confirm, name="signup_confirm"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("password/reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_done.html"),
        name="password_reset_done",
    ),
    path("password/reset/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(),
         name="password_reset_confirm"),
    path(
        "password/reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(template_name="accounts/password_reset_complete.html"),
        name="password_reset_complete",
    ),
]

# Everything below lives under /w/<slug>/: the workspace is always explicit in the URL.
workspace_urlpatterns = [
    path("", views.workspace_home, name="workspace_home"),
    path("settings/", views.workspace_settings, name="workspace_settings"),
    path("settings/members/", views.members, name="members"),
    path("settings/members/add/", views.member_add, name="member_add"),
    path("settings/members/<int:pk>/role/", views.member_role, name="member_role"),
    path("settings/members/<int:pk>/remove/", views.member_remove, name="member_remove"),
    path("settings/audit/", views.audit_log, name="audit_log"),
]

from __future__ import annotations

from typing import Any, TypeVar

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import Model
from django.http import HttpRequest

from accounts.models import AuditEvent, Membership, SignUpRequest, User, Workspace

M = TypeVar("M", bound=Model)


class ReadOnlyAdmin(admin.ModelAdmin[M]):
    """For records nobody edits from the admin, superusers included (audit trail, hashed keys)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(User)
class UserAdmin(BaseUserAdmin[User]):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active", "date_joined", "last_login"]
    list_filter = ["is_staff", "is_superuser", "is_active"]
    search_fields = ["email", "full_name"]
    readonly_fields = ["date_joined", "last_login"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("full_name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class MembershipInline(admin.TabularInline[Membership, Workspace]):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin[Workspace]):
    list_display = ["name", "slug", "created_at", "member_count"]
    search_fields = ["name", "slug"]
    readonly_fields = ["created_at"]
    inlines = [MembershipInline]

    @admin.display(description="Members")
    def member_count(self, obj: Workspace) -> int:
        return obj.memberships.count()


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin[Membership]):
    list_display = ["user", "workspace", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "workspace__name", "workspace__slug"]
    autocomplete_fields = ["user", "workspace"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin[AuditEvent]):
    """The whole audit trail, for operators. Read-only for everyone, superusers included."""

    list_display = ["created_at", "action", "actor_email", "workspace", "target_type", "target_id", "ip"]
    list_filter = ["action", ("workspace", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["actor_email", "workspace__name", "workspace__slug", "target_id"]
    date_hierarchy = "created_at"
    list_select_related = ["workspace"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in self.model._meta.fields]



@admin.register(SignUpRequest)
class SignUpRequestAdmin(ReadOnlyAdmin[SignUpRequest]):
    """Sign-ups waiting for their e-mailed link: for operators asked "I never got the e-mail".
    The hashed password is never shown; a request can be deleted (it only stops its link)."""

    list_display = ["created_at", "email", "full_name", "workspace_name"]
    search_fields = ["email", "workspace_name"]
    date_hierarchy = "created_at"
    fields = readonly_fields = ("email", "full_name", "workspace_name", "created_at")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

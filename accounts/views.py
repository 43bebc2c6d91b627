"""Pages for signing up, workspaces, members and the audit log. Thin: forms validate input,
services write, selectors read."""
from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import services
from accounts.audit import Actor, audit_record
from accounts.forms import (
    AuditFilterForm,
    ChoosePasswordForm,
    EmailAuthenticationForm,
    MemberAddForm,
    PasswordResetForm,
    RoleForm,
    SignUpForm,
    WorkspaceForm,
)
from accounts.http import AuthenticatedRequest, HtmxRequest, WorkspaceRequest
from accounts.models import AuditAction, Role, User
from accounts.permissions import SESSION_WORKSPACE_KEY, workspace_view
from accounts.selectors import (
    audit_events_for_workspace,
    memberships_for_user,
    workspace_member_get,
    workspace_members,
)
from accounts.tokens import sign_up_request_for_token

AUDIT_PAGE_SIZE = 50


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            # The same page after, whether the address is free, an invitation or an account.
            services.sign_up_request(actor=Actor.from_request(request), **form.cleaned_data)
        except ValidationError as error:
            attach_errors(form, error)
        else:
            return redirect("accounts:signup_sent")
    return render(request, "accounts/signup.html", {"form": form})


@require_http_methods(["GET", "POST"])
def signup_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """The e-mailed link. Opening it shows what will be made; the button makes it. A link
    checker that opens every link in an e-mail therefore creates nothing and signs nobody in."""
    pending = sign_up_request_for_token(token)
    if pending is not None and request.method == "POST":
        try:
            user = services.sign_up_confirm(actor=Actor.from_request(request), request=pending)
        except services.EmailRegistered:
            messages.info(request, "This address already has an account: sign in with it.")
            return redirect("accounts:login")
        except services.SignUpLinkUsed:
            pending = None
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, "Welcome to Tributary. Your workspace is ready.")
            return redirect("home")
    return render(request, "accounts/signup_confirm.html", {"pending": pending},
                  status=200 if pending is not None or request.method == "GET" else 410)


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = EmailAuthenticationForm
    redirect_authenticated_user = True


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("accounts:password_change")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        # PasswordChangeView is login_required: the user is signed in.
        audit_record(actor=Actor.from_request(self.request), action=AuditAction.PASSWORD_CHANGED,
                     target=cast(User, self.request.user))
        messages.success(self.request, "Your password was changed.")
        return response


class PasswordResetView(auth_views.PasswordResetView):
    form_class = PasswordResetForm
    template_name = "accounts/password_reset.html"
    success_url = reverse_lazy("accounts:password_reset_done")

    def form_valid(self, form: Any) -> HttpResponse:
        services.password_reset_request(actor=Actor.from_request(self.request), email=form.cleaned_data["email"])
        return redirect(self.success_url)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("accounts:password_reset_complete")
    # Invitees arrive here too: after choosing a password they are signed in straight away.
    post_reset_login = True
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"
    form_class = ChoosePasswordForm  # saves through services.password_set_from_link

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "actor": Actor.from_request(self.request)}


@login_required
def home(request: AuthenticatedRequest) -> HttpResponse:
    """Send the user to their current workspace, or to create one if they have none."""
    memberships = memberships_for_user(user=request.user)
    current = request.session.get(SESSION_WORKSPACE_KEY)
    chosen = memberships.filter(workspace__slug=current).first() or memberships.first()
    if chosen is None:
        return redirect("workspace_create")
    return redirect("workspace_home", slug=chosen.workspace.slug)


@login_required
def workspace_create(request: AuthenticatedRequest) -> HttpResponse:
    form = WorkspaceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        workspace = services.workspace_create(actor=Actor.from_request(request), name=form.cleaned_data["name"])
        messages.success(request, f"Workspace “{workspace.name}” created. You are its owner.")
        return redirect("workspace_home", slug=workspace.slug)
    return render(request, "accounts/workspace_create.html", {"form": form})


@workspace_view()
def workspace_home(request: WorkspaceRequest) -> HttpResponse:
    """Switching workspace lands here; the first page of a workspace is its integrations."""
    return redirect("integrations:index", slug=request.workspace.slug)


@workspace_view()
def workspace_settings(request: WorkspaceRequest) -> HttpResponse:
    workspace = request.workspace
    form = WorkspaceForm(request.POST or None, initial={"name": workspace.name})
    if request.method == "POST":
        if not request.membership.can_manage:
            raise PermissionDenied("Only owners and admins can rename the workspace.")
        if form.is_valid():
            services.workspace_rename(actor=Actor.from_request(request), workspace=workspace,
                                      name=form.cleaned_data["name"])
            messages.success(request, "Workspace renamed.")
            return redirect("workspace_settings", slug=workspace.slug)
    return render(request, "accounts/workspace_settings.html", {"form": form, "nav": "general"})


@workspace_view()
def members(request: WorkspaceRequest) -> HttpResponse:
    membership = request.membership
    form = MemberAddForm(acting=membership) if membership.can_manage else None
    return render(request, "accounts/members.html", _members_context(request, form))


@workspace_view(manage=True)
@require_POST
def member_add(request: WorkspaceRequest) -> HttpResponse:
    workspace = request.workspace
    form = MemberAddForm(request.POST, acting=request.membership)
    if form.is_valid():
        try:
            added = services.membership_add(actor=Actor.from_request(request), workspace=workspace,
                                            **form.cleaned_data)
        except ValidationError as error:
            attach_errors(form, error)
        else:
            verb = "invited" if not added.user.has_usable_password() else "added"
            messages.success(request, f"{added.user.email} {verb} as {added.get_role_display().lower()}.")
            if not request.htmx:
                return redirect("members", slug=workspace.slug)
            form = MemberAddForm(acting=request.membership)
    template = "accounts/_members_panel.html" if request.htmx else "accounts/members.html"
    status = 200 if form.is_bound is False or not form.errors else 422
    return render(request, template, _members_context(request, form), status=status)


@workspace_view(manage=True)
@require_POST
def member_role(request: WorkspaceRequest, pk: int) -> HttpResponse:
    workspace = request.workspace
    target = workspace_member_get(workspace=workspace, pk=pk)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            services.membership_change_role(actor=Actor.from_request(request), membership=target,
                                            role=form.cleaned_data["role"])
            messages.success(request, f"{target.user.email} is now {target.get_role_display().lower()}.")
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
    return _members_response(request)


@workspace_view()
@require_POST
def member_remove(request: WorkspaceRequest, pk: int) -> HttpResponse:
    workspace = request.workspace
    target = workspace_member_get(workspace=workspace, pk=pk)
    leaving = target.user_id == request.user.pk
    try:
        services.membership_remove(actor=Actor.from_request(request), membership=target)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return _members_response(request)
    if leaving:
        messages.success(request, f"You left {workspace.name}.")
        request.session.pop(SESSION_WORKSPACE_KEY, None)
        return _htmx_aware_redirect(request, reverse("home"))
    messages.success(request, f"{target.user.email} was removed from {workspace.name}.")
    return _members_response(request)


@workspace_view(manage=True)
@require_GET
def audit_log(request: WorkspaceRequest) -> HttpResponse:
    workspace = request.workspace
    member_list = list(workspace_members(workspace=workspace))
    form = AuditFilterForm(request.GET or None, members=member_list)
    group, actor_id = "", None
    if form.is_valid():
        group, actor_id = form.cleaned_data["group"], form.cleaned_data["actor"]
    events = audit_events_for_workspace(workspace=workspace, group=group, actor_id=actor_id, members=member_list)
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode(), "nav": "audit",
               "filtered": bool(group or actor_id)}
    template = "accounts/_audit_table.html" if request.htmx else "accounts/audit_log.html"
    return render(request, template, context)


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: the process answers and the database is reachable."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def _members_context(request: WorkspaceRequest, form: MemberAddForm | None) -> dict[str, Any]:
    workspace = request.workspace
    members = list(workspace_members(workspace=workspace))
    owners = [m.user_id for m in members if m.is_owner and m.user.has_usable_password()]
    return {
        "members": members,
        # The only owner cannot leave: say why instead of offering a button that fails. Owners
        # invited but not yet signed in do not count (services._refuse_if_last_owner).
        "sole_owner": owners == [request.user.pk],
        "owners_invited": sum(1 for m in members if m.is_owner and not m.user.has_usable_password()),
        "form": form,
        "role_choices": Role.choices,  # the choices of RoleForm's field
        "nav": "members",
    }


def _members_response(request: WorkspaceRequest) -> HttpResponse:
    if request.htmx:
        membership = request.membership
        form = MemberAddForm(acting=membership)
        return render(request, "accounts/_members_panel.html", _members_context(request, form))
    return redirect("members", slug=request.workspace.slug)


def _htmx_aware_redirect(request: HtmxRequest, url: str) -> HttpResponse:
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


def attach_errors(form: Any, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, field_errors in error.error_dict.items():
            form.add_error(field if field in form.fields else None, field_errors)
    else:
        form.add_error(None, error)


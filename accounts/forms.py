from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm

from accounts import services
from accounts.audit import Actor
from accounts.models import AuditAction, Membership, Role, User
from accounts.selectors import users_for_password_reset
from accounts.validation import validate_name


class SignUpForm(forms.Form):
    full_name = forms.CharField(label="Your name", max_length=150, validators=[validate_name])
    email = forms.EmailField(label="Work e-mail")
    password = forms.CharField(
        label="Password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    workspace_name = forms.CharField(
        label="Workspace name", max_length=100, validators=[validate_name],
        help_text="Usually your company's name. You can add more workspaces later.",
    )

    def clean_email(self) -> str:
        # A registered address is not refused here: saying so would tell anyone who owns
        # which address. The service e-mails its owner instead (services.sign_up_taken).
        return str(self.cleaned_data["email"]).lower()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        password = cleaned.get("password")
        if password:
            probe = User(email=cleaned.get("email", ""), full_name=cleaned.get("full_name", ""))
            try:
                password_validation.validate_password(password, probe)
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


class EmailAuthenticationForm(AuthenticationForm):
    username = forms.EmailField(
        label="E-mail", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That e-mail and password do not match an account. Check both and try again.",
    }


class PasswordResetForm(auth_forms.PasswordResetForm):
    """Django's, except that an account without a usable password gets the link too.

    Such an account is an invitation nobody has claimed yet (membership_add makes them), and
    this is how its owner claims it when the invitation's link has expired or was lost.
    """

    def get_users(self, email: str) -> Iterator[User]:
        return users_for_password_reset(email)


class ChoosePasswordForm(auth_forms.SetPasswordForm):  # type: ignore[type-arg]
    """The form behind an e-mailed link: saving goes through the service, which tells a
    claimed invitation from a reset."""

    def __init__(self, user: User, *args: Any, actor: Actor, **kwargs: Any) -> None:
        super().__init__(user, *args, **kwargs)
        self.actor = actor

    def save(self, commit: bool = True) -> User:
        return services.password_set_from_link(
            actor=self.actor, user=self.user, password=self.cleaned_data["new_password1"]
        )


class WorkspaceForm(forms.Form):
    name = forms.CharField(label="Workspace name", max_length=100, validators=[validate_name])


def _role_choices(acting: Membership) -> list[tuple[str, str]]:
    # Admins manage members and admins; only owners hand out the owner role.
    if acting.is_owner:
        return list(Role.choices)
    return [(value, label) for value, label in Role.choices if value != Role.OWNER]


class MemberAddForm(forms.Form):
    email = forms.EmailField(label="E-mail", help_text="People without an account get an invitation.")
    role = forms.ChoiceField(label="Role")

    def __init__(self, *args: Any, acting: Membership, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        role = self.fields["role"]
        assert isinstance(role, forms.ChoiceField)
        role.choices = _role_choices(acting)
        role.initial = Role.MEMBER


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Role.choices)


# The audit filter's words for the action groups (the part of each code before the dot).
GROUP_LABELS = {
    "auth": "Sign-ins and passwords",
    "access": "Permission denied",
    "connection": "Connections",
    "dead_letter": "Dead letters",
    "import": "Imports",
    "ingest_key": "Ingest keys",
    "member": "Members",
    "system": "System",
    "workspace": "Workspace",
}


class AuditFilterForm(forms.Form):
    group = forms.ChoiceField(label="Action", required=False)
    actor = forms.TypedChoiceField(label="Actor", required=False, coerce=int, empty_value=None)

    def __init__(self, *args: Any, members: list[Membership], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        group, actor = self.fields["group"], self.fields["actor"]
        assert isinstance(group, forms.ChoiceField) and isinstance(actor, forms.ChoiceField)
        group.choices = [("", "All actions")] + [
            (g, GROUP_LABELS.get(g, g.replace("_", " ").capitalize())) for g in AuditAction.groups()
        ]
        actor.choices = [("", "Anyone")] + [(m.user_id, m.user.email) for m in members]

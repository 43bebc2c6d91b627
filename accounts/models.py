"""Users, workspaces (the tenants), memberships with roles, and the append-only audit log."""
from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone

from accounts.validation import validate_name


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def get_by_natural_key(self, username: str | None) -> User:
        # E-mail addresses are matched case-insensitively at sign-in.
        return self.get(email__iexact=username)

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in with an e-mail address. Belongs to workspaces via Membership."""

    email = models.EmailField("e-mail address", unique=True)
    full_name = models.CharField(max_length=150, blank=True, validators=[validate_name])
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField("operator", default=False, help_text="Can use the admin.")
    date_joined = models.DateTimeField(default=timezone.now)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    @property
    def display_name(self) -> str:
        return self.full_name or self.email.split("@")[0]


class Workspace(models.Model):
    """A tenant: one customer of the platform, with its members and Segment connections."""

    name = models.CharField(max_length=100, validators=[validate_name])
    slug = models.SlugField(max_length=60, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


# Memberships whose person has an account they can sign in to: not an invitation nobody has
# accepted yet (an account made by the invitation, with no usable password).
ACCEPTED = ~models.Q(user__password__startswith=UNUSABLE_PASSWORD_PREFIX)


class Membership(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["workspace__name", "user__email"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "user"], name="membership_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace} ({self.role})"

    @property
    def can_manage(self) -> bool:
        """Owners and admins manage the workspace; members only look."""
        return self.role in (Role.OWNER, Role.ADMIN)

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER


class SignUpRequest(models.Model):
    """A sign-up waiting for its address to be proven: nothing exists until the e-mailed link
    is followed (services.sign_up_confirm), so nobody can hold an address they cannot read,
    nor be added to a workspace under it. The password is kept hashed, as an account's is;
    the link carries this row's id and an HMAC of it (accounts.tokens), never stored."""

    email = models.EmailField(db_index=True)
    full_name = models.CharField(max_length=150)
    workspace_name = models.CharField(max_length=100)
    password = models.CharField(max_length=128)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"sign-up of {self.email} ({self.created_at:%Y-%m-%d %H:%M})"


class AuditAction(models.TextChoices):
    """Grouped codes: the part before the dot is the group shown in filters."""

    SIGNED_UP = "auth.signed_up", "Signed up"
    SIGN_UP_EXISTING = "auth.sign_up_existing", "Sign-up tried with a registered address"
    LOGGED_IN = "auth.logged_in", "Signed in"
    LOGIN_FAILED = "auth.login_failed", "Sign-in failed"
    LOCKED_OUT = "auth.locked_out", "Locked out after failed sign-ins"
    LOGGED_OUT = "auth.logged_out", "Signed out"
    PASSWORD_CHANGED = "auth.password_changed", "Password changed"
    PASSWORD_RESET_REQUESTED = "auth.password_reset_requested", "Password reset requested"
    PASSWORD_RESET = "auth.password_reset", "Password reset"
    WORKSPACE_CREATED = "workspace.created", "Workspace created"
    WORKSPACE_RENAMED = "workspace.renamed", "Workspace renamed"
    MEMBER_ADDED = "member.added", "Member added"
    MEMBER_INVITED = "member.invited", "Member invited"
    MEMBER_INVITATION_ACCEPTED = "member.invitation_accepted", "Invitation accepted"
    MEMBER_ROLE_CHANGED = "member.role_changed", "Member role changed"
    MEMBER_REMOVED = "member.removed", "Member removed"
    ACCESS_DENIED = "access.denied", "Permission denied"
    CONNECTION_CREATED = "connection.created", "Segment connection created"
    CONNECTION_KEY_REPLACED = "connection.key_replaced", "Write key replaced"
    CONNECTION_RENAMED = "connection.renamed", "Segment connection renamed"
    CONNECTION_REGION_CHANGED = "connection.region_changed", "Region changed"
    CONNECTION_ENABLED = "connection.enabled", "Segment connection enabled"
    CONNECTION_DISABLED = "connection.disabled", "Segment connection disabled"
    CONNECTION_DELETED = "connection.deleted", "Segment connection deleted"
    CONNECTION_CHECKED = "connection.checked", "Connection check run"
    CONNECTION_CHECK_THROTTLED = "connection.check_throttled", "Connection check refused (too many)"
    CONNECTION_PAUSED = "connection.paused", "Delivery paused"
    CONNECTION_RESUMED = "connection.resumed", "Delivery resumed"
    CONNECTION_RETRIED_NOW = "connection.retried_now", "Retry brought forward"
    CONNECTION_EVENTS_EXPIRED = "connection.events_expired", "Undelivered events expired (dead letters)"
    CONNECTION_DEAD_LETTERS_NOTIFIED = "connection.dead_letters_notified", "Owners told of dead letters"
    CONNECTION_RECOVERED_NOTIFIED = "connection.recovered_notified", "Owners told delivery recovered"
    DEAD_LETTERS_REPLAYED = "dead_letter.replayed", "Dead letters replayed"
    DEAD_LETTERS_DISCARDED = "dead_letter.discarded", "Dead letters discarded"
    IMPORT_UPLOADED = "import.uploaded", "Import file uploaded"
    IMPORT_STARTED = "import.started", "Import started"
    IMPORT_CANCELLED = "import.cancelled", "Import cancelled"
    IMPORT_FINISHED = "import.finished", "Import finished"
    INGEST_KEY_CREATED = "ingest_key.created", "Ingest key created"
    INGEST_KEY_REVOKED = "ingest_key.revoked", "Ingest key revoked"
    WEBHOOK_CREATED = "webhook.created", "Webhook endpoint created"
    WEBHOOK_UPDATED = "webhook.updated", "Webhook endpoint changed"
    WEBHOOK_SECRET_ROTATED = "webhook.secret_rotated", "Webhook secret rotated"
    WEBHOOK_ENABLED = "webhook.enabled", "Webhook endpoint enabled"
    WEBHOOK_DISABLED = "webhook.disabled", "Webhook endpoint disabled"
    WEBHOOK_DELETED = "webhook.deleted", "Webhook endpoint deleted"
    FILTER_CREATED = "filter.created", "Destination filter created"
    FILTER_UPDATED = "filter.updated", "Destination filter changed"
    FILTER_ENABLED = "filter.enabled", "Destination filter enabled"
    FILTER_DISABLED = "filter.disabled", "Destination filter disabled"
    FILTER_DELETED = "filter.deleted", "Destination filter deleted"
    TRACKING_PLAN_SAVED = "tracking_plan.saved", "Tracking plan saved"
    TRACKING_PLAN_IMPORTED = "tracking_plan.imported", "Tracking plan imported"
    TRACKING_PLAN_ENFORCEMENT_CHANGED = "tracking_plan.enforcement_changed", "Tracking plan enforcement changed"
    TRACKING_PLAN_DELETED = "tracking_plan.deleted", "Tracking plan deleted"
    BLOCKED_EVENTS_RELEASED = "tracking_plan.blocked_released", "Blocked events released into the log"
    KEYS_ROTATED = "system.keys_rotated", "Encryption keys rotated"
    SEGMENT_TOKEN_SAVED = "segment_workspace.token_saved", "Segment Public API token saved"
    SEGMENT_TOKEN_REPLACED = "segment_workspace.token_replaced", "Segment Public API token replaced"
    SEGMENT_TOKEN_REMOVED = "segment_workspace.token_removed", "Segment Public API token removed"
    SEGMENT_SOURCE_PICKED = "segment_workspace.source_picked", "Segment source picked for a connection"
    SEGMENT_LABEL_ADDED = "segment_workspace.label_added", "Label added to a Segment source"
    SEGMENT_LABEL_CREATED = "segment_workspace.label_created", "Label created in Segment"
    SEGMENT_SOURCE_DELETED = "segment_workspace.source_deleted", "Segment source deleted in Segment"

    @classmethod
    def groups(cls) -> list[str]:
        return sorted({value.split(".")[0] for value in cls.values})


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise TypeError("Audit events are append-only.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise TypeError("Audit events are append-only.")


class AuditEvent(models.Model):
    """One thing that happened, who did it and from where. Never updated, never deleted.

    `actor` is empty for the system; `actor_email` keeps the name readable if the user is
    later deleted. `details` never holds a secret.
    """

    workspace = models.ForeignKey(
        Workspace, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    actor = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    actor_email = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64, choices=AuditAction.choices, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["workspace", "-created_at"], name="audit_ws_time")]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_email or 'system'}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise TypeError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise TypeError("Audit events are append-only.")

    @property
    def group(self) -> str:
        return self.action.split(".")[0]

"""Ingest keys: create, revoke, list, and authenticate the platform's calls to the ingest API.

A key is shown once, at creation; only its SHA-256 and last four characters are kept, and
audit rows carry the name and that hint, never the key. Pages, the admin and the
`create_ingest_key` command all come through here.
"""
from __future__ import annotations

from datetime import timedelta
from time import monotonic

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.http import Http404
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.audit import Actor, audit_record
from accounts.models import AuditAction, Workspace
from accounts.permissions import require_manager
from accounts.validation import name_cleaned
from integrations.models import IngestKey
from integrations.models.ingest import KEY_PREFIX, IngestKeyQuerySet

NAME_MAX_LENGTH = IngestKey._meta.get_field("name").max_length or 80
NAME_MISSING = "Give the key a name: what sends with it, for example Production or Staging."
# `last_used_at` is for people ("used 3 minutes ago"), so one write a minute per key is
# plenty; writing it on every request would make each ingest call a database write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Far longer than any key we issue; anything longer is not worth hashing.
MAX_KEY_LENGTH = 200
# Each process keeps a key it found for this long, so a busy sender costs no lookup per
# request: a revoked key stops working in the revoking process at once, everywhere else
# within this many seconds.
RECENT_SECONDS = 5.0
RECENT_MAX = 10_000
_recent: dict[str, tuple[float, IngestKey]] = {}


@sensitive_variables("key")
def ingest_key_create(*, actor: Actor, workspace: Workspace, name: str) -> tuple[IngestKey, str]:
    """A new active key for the workspace, and its plaintext: the only time it exists."""
    name = name_cleaned(name, missing=NAME_MISSING, max_length=NAME_MAX_LENGTH)
    with transaction.atomic():
        require_manager(actor, workspace, to="manage ingest keys")
        # Lock the workspace so two requests cannot both take the same name.
        Workspace.objects.select_for_update().filter(pk=workspace.pk).first()
        if ingest_keys_for_workspace(workspace=workspace).active().filter(name__iexact=name).exists():
            raise ValidationError({"name": f"An active key is already called “{name}”. Choose another name, "
                                           f"or revoke that key first."})
        key = IngestKey.generate()
        ingest_key = IngestKey.objects.create(workspace=workspace, name=name, key_hash=IngestKey.hash(key),
                                              hint=key[-4:], created_by=actor.user)
        audit_record(actor=actor, action=AuditAction.INGEST_KEY_CREATED, workspace=workspace,
                     target=ingest_key, details=describe(ingest_key))
    return ingest_key, key


def ingest_key_revoke(*, actor: Actor, ingest_key: IngestKey) -> IngestKey:
    """Stop accepting the key at once. Revoking a revoked key changes nothing and is not audited again."""
    with transaction.atomic():
        require_manager(actor, ingest_key.workspace, to="manage ingest keys")
        now = timezone.now()
        revoked = IngestKey.objects.filter(pk=ingest_key.pk, revoked_at__isnull=True).update(revoked_at=now)
        if not revoked:  # already revoked, perhaps by a concurrent request
            ingest_key.refresh_from_db(fields=["revoked_at"])
            return ingest_key
        ingest_key.revoked_at = now
        _recent.pop(ingest_key.key_hash, None)
        audit_record(actor=actor, action=AuditAction.INGEST_KEY_REVOKED, workspace=ingest_key.workspace,
                     target=ingest_key, details=describe(ingest_key))
    return ingest_key


def ingest_keys_for_workspace(*, workspace: Workspace) -> IngestKeyQuerySet:
    """Active keys first, newest first; then revoked ones, most recently revoked first."""
    return (IngestKey.objects.filter(workspace=workspace).select_related("created_by")
            .order_by(F("revoked_at").desc(nulls_first=True), "-created_at"))


def ingest_key_get_for_workspace(*, workspace: Workspace, pk: int) -> IngestKey:
    try:
        return ingest_keys_for_workspace(workspace=workspace).select_related("workspace").get(pk=pk)
    except IngestKey.DoesNotExist:
        raise Http404("No such ingest key.") from None


@sensitive_variables("raw_key")
def ingest_key_authenticate(raw_key: str) -> IngestKey | None:
    """The active key with this plaintext, with its workspace; None for anything else.

    Constant-time by construction: the database is asked for the key's hash, so no
    comparison ever runs over the secret itself.
    """
    if not isinstance(raw_key, str) or not raw_key.startswith(KEY_PREFIX) or len(raw_key) > MAX_KEY_LENGTH:
        return None
    key_hash = IngestKey.hash(raw_key)
    now = monotonic()
    found_at, ingest_key = _recent.get(key_hash, (0.0, None))
    if ingest_key is None or now - found_at > RECENT_SECONDS:
        ingest_key = IngestKey.objects.active().select_related("workspace").filter(key_hash=key_hash).first()
        if ingest_key is None:
            _recent.pop(key_hash, None)
            return None
        if len(_recent) >= RECENT_MAX:
            _recent.clear()
        _recent[key_hash] = (now, ingest_key)
    _touch(ingest_key)
    return ingest_key


@sensitive_variables("raw_key")
def ingest_key_recognised(raw_key: str) -> bool:
    """Whether this process has found this key active before, asked of memory alone.

    Stale entries count (the key may have been revoked since: authenticating it still asks
    the database), so a sender the process has served is told apart from a guessed key
    without a lookup; a guessed key can never be in here.
    """
    if not isinstance(raw_key, str) or not raw_key.startswith(KEY_PREFIX) or len(raw_key) > MAX_KEY_LENGTH:
        return False
    return IngestKey.hash(raw_key) in _recent


def describe(ingest_key: IngestKey) -> dict[str, str]:
    """What the audit log says about a key: its name and hint, never the key."""
    return {"name": ingest_key.name, "hint": masked(ingest_key)}


def masked(ingest_key: IngestKey) -> str:
    return f"{KEY_PREFIX}…{ingest_key.hint}"


def _touch(ingest_key: IngestKey) -> None:
    """Record the use at most once a minute per key, however many servers answer at once.

    The UPDATE carries the staleness test, so of concurrent requests only one writes.
    """
    now = timezone.now()
    stale_before = now - LAST_USED_RESOLUTION
    if ingest_key.last_used_at is not None and ingest_key.last_used_at >= stale_before:
        return
    updated = (IngestKey.objects.filter(pk=ingest_key.pk)
               .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale_before))
               .update(last_used_at=now))
    if updated:
        ingest_key.last_used_at = now

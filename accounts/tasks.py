"""Background work for accounts. Tasks take ids and are safe to run twice."""
from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.contrib.sessions.models import Session
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import Membership
from accounts.validation import one_line

logger = logging.getLogger(__name__)

@shared_task(acks_late=True, reject_on_worker_lost=True)
def send_membership_email(membership_id: int, invited: bool) -> None:
    """Tell someone they were added to a workspace; an invitee gets a link to set a password.

    Re-running sends the message again, which is harmless for a notice like this.
    """
    membership = Membership.objects.select_related("user", "workspace").filter(pk=membership_id).first()
    if membership is None:  # removed again before the worker got to it
        return
    user = membership.user
    context = {
        "membership": membership,
        "invited": invited,
        "site_url": settings.SITE_URL,
        "workspace_url": settings.SITE_URL + reverse("workspace_home", args=[membership.workspace.slug]),
    }
    if invited:
        uid = urlsafe_base64_encode(force_bytes(user.pk))
        token = default_token_generator.make_token(user)
        context["set_password_url"] = settings.SITE_URL + reverse(
            "accounts:password_reset_confirm", args=[uid, token]
        )
    subject = one_line(f"You have been added to {membership.workspace.name} on Tributary")
    body = render_to_string("accounts/email/membership_added.txt", context)
    send_mail(subject, body, None, [user.email])
    logger.info("accounts.membership_email_sent", extra={"membership_id": membership_id, "invited": invited})



@shared_task
def purge_expired_sessions() -> None:
    deleted, _ = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    logger.info("accounts.sessions_purged", extra={"deleted": deleted})

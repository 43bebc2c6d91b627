"""Background work for accounts. Tasks take ids and are safe to run twice."""
from __future__ import annotations

import hashlib
import logging
from urllib.parse import urlsplit

from celery import shared_task
from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import Membership, SignUpRequest, User
from accounts.selectors import users_for_password_reset
from accounts.tokens import sign_up_token
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
        context["set_password_url"] = _set_password_url(user)
    subject = one_line(f"You have been added to {membership.workspace.name} on Tributary")
    body = render_to_string("accounts/email/membership_added.txt", context)
    send_mail(subject, body, None, [user.email])
    logger.info("accounts.membership_email_sent", extra={"membership_id": membership_id, "invited": invited})


@shared_task(acks_late=True, reject_on_worker_lost=True)
def send_sign_up_notice(user_id: int) -> None:
    """Tell the owner of an address that someone signed up with it (services.sign_up_taken).

    An invitee who never chose a password gets a link to claim the account; anyone else is
    reminded they have an account. Re-running sends it again, as a second sign-up would.
    """
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None or not _first_this_minute("sign-up-notice", user.email):
        return
    claiming = not user.has_usable_password()
    context = {
        "user": user,
        "claiming": claiming,
        "workspaces": [m.workspace.name for m in Membership.objects.filter(user=user).select_related("workspace")],
        "site_url": settings.SITE_URL,
        "sign_in_url": settings.SITE_URL + reverse("accounts:login"),
        "reset_url": settings.SITE_URL + reverse("accounts:password_reset"),
    }
    if claiming:
        context["set_password_url"] = _set_password_url(user)
    subject = "Claim your Tributary account" if claiming else "You already have a Tributary account"
    send_mail(subject, render_to_string("accounts/email/sign_up_existing.txt", context), None, [user.email])
    logger.info("accounts.sign_up_notice_sent", extra={"user_id": user_id, "claiming": claiming})


@shared_task(acks_late=True, reject_on_worker_lost=True)
def send_sign_up_link(request_id: int) -> None:
    """E-mail the link that finishes a sign-up (services.sign_up_request). The token is made
    here from the id, never passed through the broker; re-running sends the same link."""
    request = SignUpRequest.objects.filter(pk=request_id).first()
    if request is None:  # confirmed or replaced before the worker got to it
        return
    context = {
        "request": request,
        "confirm_url": settings.SITE_URL + reverse("accounts:signup_confirm", args=[sign_up_token(request)]),
        "site_url": settings.SITE_URL,
    }
    send_mail("Confirm your e-mail address to finish signing up for Tributary",
              render_to_string("accounts/email/sign_up_confirm.txt", context), None, [request.email])
    logger.info("accounts.sign_up_link_sent", extra={"sign_up_request_id": request_id})


@shared_task(acks_late=True, reject_on_worker_lost=True)
def send_password_reset(email: str) -> None:
    """E-mail a link to choose a password to the account of `email`, if there is one
    (services.password_reset_request). Here rather than in the web request, so the page
    answers as fast for an unknown address as for a known one, and a mail server that is down
    delays the e-mail instead of failing the page. One a minute per address at most."""
    site = urlsplit(settings.SITE_URL)
    for user in users_for_password_reset(email):
        if not _first_this_minute("password-reset", user.email):
            continue
        context = {
            "email": user.email, "user": user, "domain": site.netloc, "protocol": site.scheme,
            "uid": urlsafe_base64_encode(force_bytes(user.pk)), "token": default_token_generator.make_token(user),
        }
        subject = one_line(render_to_string("accounts/email/password_reset_subject.txt", context))
        send_mail(subject, render_to_string("accounts/email/password_reset.txt", context), None, [user.email])
        logger.info("accounts.password_reset_sent", extra={"user_id": user.pk})


def _first_this_minute(purpose: str, email: str) -> bool:
    """True for the first e-mail of this kind to this address in a minute, so a form cannot
    be used to flood someone's inbox. Best effort: as good as the cache (CACHE_URL)."""
    digest = hashlib.sha256(email.lower().encode()).hexdigest()[:32]
    if cache.add(f"accounts:mail:{purpose}:{digest}", 1, timeout=60):
        return True
    logger.info("accounts.email_held_back", extra={"purpose": purpose})
    return False


def _set_password_url(user: User) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return f"{settings.SITE_URL}{reverse('accounts:password_reset_confirm', args=[uid, token])}"


@shared_task
def purge_expired_sessions() -> None:
    deleted, _ = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    logger.info("accounts.sessions_purged", extra={"deleted": deleted})

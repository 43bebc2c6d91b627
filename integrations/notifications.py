"""E-mails about connections, to the people who can act on them: owners and admins."""
from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from accounts.models import Membership, Role
from integrations.models import Connection


def managers_emails(workspace_id: int) -> list[str]:
    return sorted(Membership.objects.filter(workspace_id=workspace_id, role__in=[Role.OWNER, Role.ADMIN])
                  .values_list("user__email", flat=True))


def send_paused_email(*, connection_id: int) -> None:
    connection = Connection.objects.select_related("workspace").filter(pk=connection_id).first()
    if connection is None or not connection.paused_reason:
        return  # deleted or resumed before the worker got here
    recipients = managers_emails(connection.workspace_id)
    if not recipients:
        return
    url = settings.SITE_URL + reverse("integrations:connection", args=[connection.workspace.slug, connection.pk])
    context = {"connection": connection, "workspace": connection.workspace, "url": url}
    subject = f"Delivery to “{connection.name}” is paused ({connection.workspace.name})"
    send_mail(subject, render_to_string("integrations/email/connection_paused.txt", context), None, recipients)

"""Helpers the accounts tests share."""
from __future__ import annotations

from typing import Any

from django.test import Client
from django.urls import reverse

from accounts import tasks


def ask_for_password_link(client: Client, email: str, **options: Any) -> Any:
    """Post the "Forgot your password?" form, then send what the worker sends for it (the
    page only queues it: test_passwords proves that through a real worker)."""
    response = client.post(reverse("accounts:password_reset"), {"email": email}, **options)
    tasks.send_password_reset(email)
    return response

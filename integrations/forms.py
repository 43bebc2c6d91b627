"""The Settings forms: connecting a Segment source, replacing its key, moving its region, renaming,
and naming an ingest API key."""
from __future__ import annotations

from typing import Any

from django import forms

from accounts.validation import validate_name
from integrations.models import Region
from integrations.segment.verification import key_format_problem

WRITE_KEY_HELP = (
    "In Segment: Connections → Sources → your HTTP API source → Settings → API Keys → Write Key. "
    "It is stored encrypted and never shown again in full."
)
REGION_HELP = (
    "The region of the Segment workspace that owns the source. EU workspaces open at "
    "app.eu.segment.com and list “Region: EU” under Settings → General; everything else is US."
)


class WriteKeyField(forms.CharField):
    """A password-style input that is never re-filled: after a failed submit the key is typed again.

    No max_length: the browser would enforce it as maxlength and silently keep the first
    characters of an over-long paste. `key_format_problem` refuses it by name instead."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            label="Write key", strip=True, help_text=WRITE_KEY_HELP,
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "spellcheck": "false"}),
            **kwargs,
        )

    def validate(self, value: str) -> None:
        super().validate(value)
        problem = key_format_problem(value)
        if problem:
            raise forms.ValidationError(problem)


class ConnectionForm(forms.Form):
    name = forms.CharField(label="Name", max_length=80, help_text="For example Production or Staging.",
                           validators=[validate_name])
    write_key = WriteKeyField()
    region = forms.ChoiceField(label="Region", choices=Region.choices, initial=Region.US,
                               widget=forms.RadioSelect, help_text=REGION_HELP)


class ReplaceKeyForm(forms.Form):
    write_key = WriteKeyField()
    region = forms.ChoiceField(label="Region", choices=Region.choices, widget=forms.RadioSelect,
                               help_text=REGION_HELP)


class RegionForm(forms.Form):
    """The region alone: the stored key is checked there, without pasting it again."""

    region = forms.ChoiceField(label="Region", choices=Region.choices, widget=forms.RadioSelect,
                               help_text=REGION_HELP)


class RenameForm(forms.Form):
    name = forms.CharField(label="Name", max_length=80, validators=[validate_name])


class IngestKeyForm(forms.Form):
    name = forms.CharField(label="Name", max_length=80,
                           help_text="What sends with this key, for example Production or Staging.",
                           error_messages={"required": "Give the key a name: what sends with it."},
                           widget=forms.TextInput(attrs={"autocomplete": "off"}), validators=[validate_name])

"""The filter form: a sentence ("Drop events where all of: properties.email contains
@test.com") or pasted FQL, and what the action needs (a share to keep, properties)."""
from __future__ import annotations

import re
from typing import Any

from django import forms

from integrations.filters.sentence import JOINS, OPERATORS, Row, SentenceInvalid, row_fql, sentence_fql
from integrations.models import DestinationFilter, FilterAction

ROWS = 3
ACTION_WORDS = [
    (FilterAction.DROP, "Drop events"),
    (FilterAction.ONLY_SEND, "Only send events"),
    (FilterAction.SAMPLE, "Sample events"),
    (FilterAction.DROP_PROPERTIES, "Drop properties from events"),
    (FilterAction.ALLOW_PROPERTIES, "Allow only some properties on events"),
]
FIELD_SUGGESTIONS = ("type", "event", "userId", "anonymousId", "name", "properties.", "traits.",
                     "context.page.path", "context.library.name")


class FilterForm(forms.Form):
    title = forms.CharField(label="Name", max_length=100,
                            widget=forms.TextInput(attrs={"placeholder": "No test users"}))
    action = forms.ChoiceField(label="Action", choices=ACTION_WORDS, initial=FilterAction.DROP)
    join = forms.ChoiceField(label="where", choices=[(k, f"{v} of") for k, v in JOINS.items()], initial="all")
    fql = forms.CharField(
        label="Or the condition in FQL", required=False, max_length=4000,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false",
                                     "placeholder": "type = \"track\" and match(event, \"Experiment *\")"}),
        help_text="Segment's Filter Query Language, as in Segment's filter editor; when given, it is used "
                  "instead of the rows above.")
    percent = forms.DecimalField(label="Keep this share of matching events (%)", required=False, min_value=0,
                                 max_value=100, decimal_places=3, initial=10)
    sample_path = forms.CharField(label="Sample by", required=False, max_length=200, initial="userId",
                                  help_text="The same value is always kept or always dropped (userId keeps whole "
                                            "users). Empty: by messageId.")
    fields_text = forms.CharField(
        label="Properties", required=False, max_length=4000,
        widget=forms.TextInput(attrs={"placeholder": "properties.email, context.traits.email"}),
        help_text="Full paths, separated by commas: properties.email, context.traits.phone; userId is a top-level "
                  "field.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for n in range(1, ROWS + 1):
            self.fields[f"field_{n}"] = forms.CharField(
                label=f"Field {n}", required=False, max_length=200,
                widget=forms.TextInput(attrs={"list": "filter-fields", "placeholder": "event"}))
            self.fields[f"operator_{n}"] = forms.ChoiceField(label=f"Operator {n}", choices=list(OPERATORS.items()),
                                                             required=False)
            self.fields[f"value_{n}"] = forms.CharField(label=f"Value {n}", required=False, max_length=1000,
                                                        widget=forms.TextInput(attrs={"placeholder": "value"}))

    @property
    def rows(self) -> list[tuple[forms.BoundField, forms.BoundField, forms.BoundField]]:
        return [(self[f"field_{n}"], self[f"operator_{n}"], self[f"value_{n}"]) for n in range(1, ROWS + 1)]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        data["condition"] = self._condition(data)
        action = data.get("action")
        data["fields"] = self._fields(data.get("fields_text") or "") if action in (
            FilterAction.DROP_PROPERTIES, FilterAction.ALLOW_PROPERTIES) else {}
        percent = data.get("percent")
        data["percent_share"] = float(percent) / 100 if percent is not None else None
        if action == FilterAction.SAMPLE and percent is None:
            self.add_error("percent", "Give the share of matching events to keep, between 0 and 100.")
        return data

    def _condition(self, data: dict[str, Any]) -> str:
        fql = (data.get("fql") or "").strip()
        if fql:
            return fql
        numbered = {n: Row(data.get(f"field_{n}") or "", data.get(f"operator_{n}") or "is",
                           data.get(f"value_{n}") or "")
                    for n in range(1, ROWS + 1) if (data.get(f"field_{n}") or "").strip()}
        try:
            return sentence_fql(list(numbered.values()), data.get("join") or "all")
        except SentenceInvalid as error:
            # At the row it is about; no condition at all belongs at the first row, where one is
            # written, not under the FQL box.
            self.add_error(f"field_{_faulty_row(numbered)}", str(error))
            return ""

    def _fields(self, text: str) -> dict[str, list[str]]:
        chosen: dict[str, list[str]] = {}
        for item in (part.strip() for part in re.split(r"[,\n]", text)):
            if not item:
                continue
            path, _, name = item.rpartition(".")
            chosen.setdefault(path, []).append(name)
        if not chosen:
            self.add_error("fields_text", "Name at least one property, for example properties.email.")
        return chosen


def _faulty_row(numbered: dict[int, Row]) -> int:
    for n, row in numbered.items():
        try:
            row_fql(row)
        except SentenceInvalid:
            return n
    return 1


def initial_for(row: DestinationFilter) -> dict[str, Any]:
    """The form for changing a saved filter: its condition shown as FQL."""
    fields = ", ".join(f"{path}.{name}" if path else name for path, names in (row.fields or {}).items()
                       for name in names)
    return {"title": row.title, "action": row.action, "fql": row.condition,
            "percent": round(row.percent * 100, 3) if row.percent is not None else 10,
            "sample_path": row.sample_path, "fields_text": fields}

from django.db import migrations, models
from django.db.models import F, Value
from django.db.models.functions import Concat


def clear_checked_connections(apps, schema_editor):
    """Connections that were delivering before the gate existed keep delivering: a healthy or
    degraded health means a check had found their key known. The rest wait for a check."""
    Connection = apps.get_model("integrations", "Connection")
    Connection.objects.filter(health__in=["healthy", "degraded"]).update(
        checked_key=Concat(F("write_key_fingerprint"), Value(":"), F("region")))


class Migration(migrations.Migration):

    dependencies = [
        ('integrations', '0008_dead_letter_replays'),
    ]

    operations = [
        migrations.AddField(
            model_name='connection',
            name='checked_key',
            field=models.CharField(blank=True, editable=False, max_length=80),
        ),
        migrations.AddField(
            model_name='connection',
            name='lease_owner',
            field=models.CharField(blank=True, editable=False, max_length=40),
        ),
        migrations.AlterField(
            model_name='verification',
            name='trigger',
            field=models.CharField(choices=[('created', 'Connection created'), ('key_replaced', 'Write key replaced'), ('region_changed', 'Region changed'), ('manual', 'Run from the page'), ('scheduled', 'Daily check'), ('retry', 'Retried after a check that could not finish'), ('operator', 'Run by an operator')], max_length=16),
        ),
        migrations.RunPython(clear_checked_connections, migrations.RunPython.noop),
    ]

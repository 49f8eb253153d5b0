"""Before include lists, a rules or everyone audience ignored its members (a list left over from
being a static audience, say); now a rules audience adds them to whom it selects. So that no
audience starts reaching people it did not reach before, the leftover lists are emptied."""

from django.db import migrations


def forget_leftover_members(apps, schema_editor):
    Audience = apps.get_model("campaigns", "Audience")
    Members = Audience.members.through
    Members.objects.using(schema_editor.connection.alias).exclude(audience__kind="static").delete()


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0011_approval_fingerprint")]

    operations = [migrations.RunPython(forget_leftover_members, migrations.RunPython.noop)]

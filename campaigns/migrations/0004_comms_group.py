"""The "Comms" group: what the communications staff who run Crier from the admin may do.

Everything about people, audiences, templates, categories, campaigns and opt-outs; deliveries and
Teams addresses read-only; nothing about API keys, users or groups. Delete only where it undoes
nothing that happened: opt-outs, templates, audiences and campaigns (the admin lets only drafts go).
Permissions are normally created after ``migrate``; this migration creates the ones it needs itself.
"""

from __future__ import annotations

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP_NAME = "Comms"
PERMISSIONS = {
    ("campaigns", "recipient"): ("add", "change", "view"),
    ("campaigns", "category"): ("add", "change", "view"),
    ("campaigns", "audience"): ("add", "change", "view", "delete"),
    ("campaigns", "messagetemplate"): ("add", "change", "view", "delete"),
    ("campaigns", "campaign"): ("add", "change", "view", "delete"),
    ("campaigns", "optout"): ("add", "change", "view", "delete"),
    ("delivery", "delivery"): ("view",),
    ("bots", "teamsaddress"): ("view",),
}


def comms_group_ensure(apps, *, using: str = "default"):
    """Creates the permissions of the three apps if missing, then the group with exactly its own."""
    for label in sorted({app for app, _ in PERMISSIONS}):
        # The installed app config says the app has models; ``apps`` (the migration state) gives them.
        create_permissions(global_apps.get_app_config(label), verbosity=0, using=using, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(using).get_or_create(name=GROUP_NAME)
    wanted = [
        Permission.objects.using(using).get(
            content_type__app_label=app, content_type__model=model, codename=f"{action}_{model}"
        )
        for (app, model), actions in PERMISSIONS.items()
        for action in actions
    ]
    group.permissions.set(wanted)
    return group


def create_comms_group(apps, schema_editor):
    comms_group_ensure(apps, using=schema_editor.connection.alias)


def delete_comms_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(name=GROUP_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("campaigns", "0003_campaign_total_deliveries"),
        ("delivery", "0002_engine_state"),
        ("bots", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_comms_group, delete_comms_group)]

"""The three roles comms staff have in the admin, as groups.

- **Authors** (what the "Comms" group was; renamed, members kept): people, audiences, templates,
  categories, campaigns and opt-outs; launch, schedule, pause, resume and cancel; edit or recall a
  sent message. They cannot approve, so a large campaign needs a second person.
- **Approvers**: read everything an author writes, approve large campaigns, pause, cancel and recall.
- **Viewers**: read only.

Deliveries, Teams addresses and the audit log are read-only for everyone; API keys, users and groups
belong to administrators. Permissions are normally created after ``migrate``; this migration
creates the ones it needs itself.
"""

from __future__ import annotations

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations

AUTHORS, APPROVERS, VIEWERS = "Authors", "Approvers", "Viewers"
OLD_NAME = "Comms"
READ = {
    ("campaigns", "recipient"): ("view",),
    ("campaigns", "category"): ("view",),
    ("campaigns", "audience"): ("view",),
    ("campaigns", "messagetemplate"): ("view",),
    ("campaigns", "campaign"): ("view",),
    ("campaigns", "optout"): ("view",),
    ("campaigns", "auditentry"): ("view",),
    ("delivery", "delivery"): ("view",),
    ("bots", "teamsaddress"): ("view",),
}
ROLES = {
    AUTHORS: {
        **READ,
        ("campaigns", "recipient"): ("add", "change", "view"),
        ("campaigns", "category"): ("add", "change", "view"),
        ("campaigns", "audience"): ("add", "change", "view", "delete"),
        ("campaigns", "messagetemplate"): ("add", "change", "view", "delete"),
        ("campaigns", "campaign"): ("add", "change", "view", "delete", "recall"),
        ("campaigns", "optout"): ("add", "change", "view", "delete"),
    },
    APPROVERS: {**READ, ("campaigns", "campaign"): ("view", "change", "approve", "recall")},
    VIEWERS: READ,
}


def _codename(action: str, model: str) -> str:
    return f"{action}_{model}"


def roles_ensure(apps, *, using: str = "default") -> dict:
    """Creates the apps' permissions if missing, then each role's group with exactly its own."""
    for label in sorted({app for role in ROLES.values() for app, _ in role}):
        create_permissions(global_apps.get_app_config(label), verbosity=0, using=using, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    old = Group.objects.using(using).filter(name=OLD_NAME).first()
    if old is not None and not Group.objects.using(using).filter(name=AUTHORS).exists():
        old.name = AUTHORS
        old.save(update_fields=["name"])
    groups = {}
    for name, permissions in ROLES.items():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.set(
            [
                Permission.objects.using(using).get(
                    content_type__app_label=app, content_type__model=model, codename=_codename(action, model)
                )
                for (app, model), actions in permissions.items()
                for action in actions
            ]
        )
        groups[name] = group
    return groups


def create_roles(apps, schema_editor):
    roles_ensure(apps, using=schema_editor.connection.alias)


def remove_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=[APPROVERS, VIEWERS]).delete()
    Group.objects.using(schema_editor.connection.alias).filter(name=AUTHORS).update(name=OLD_NAME)


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0008_staff_profiles_audit_approvals")]

    operations = [migrations.RunPython(create_roles, remove_roles)]

"""The three roles comms staff have in the admin, as groups (made by a data migration, and by the
demo's seed and the tests through ``roles_ensure``).

- **Authors**: people, audiences, templates, categories, campaigns and opt-outs; launch, schedule,
  pause, resume and cancel; edit or recall a sent message. They cannot approve, so a large campaign
  needs a second person.
- **Approvers**: read everything an author writes, approve large campaigns, pause, cancel and
  recall. They change nothing a campaign sends or whom it reaches, and neither launch nor schedule.
- **Viewers**: read only.

Deliveries, Teams addresses and the audit log are read-only for everyone; API keys, users and groups
belong to administrators.
"""

from __future__ import annotations

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions

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
        ("campaigns", "campaign"): ("add", "change", "view", "delete", "recall", "launch", "control"),
        ("campaigns", "optout"): ("add", "change", "view", "delete"),
    },
    APPROVERS: {**READ, ("campaigns", "campaign"): ("view", "approve", "control", "recall")},
    VIEWERS: READ,
}


def roles_ensure(apps=global_apps, *, using: str = "default") -> dict:
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
                    content_type__app_label=app, content_type__model=model, codename=f"{action}_{model}"
                )
                for (app, model), actions in permissions.items()
                for action in actions
            ]
        )
        groups[name] = group
    return groups

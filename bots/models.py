"""Where a person can be reached in Teams, learned from the activities Teams sends the bot."""

from __future__ import annotations

from django.db import models


class TeamsAddress(models.Model):
    """A person's one-to-one chat with the bot. Keyed by Entra object id, the identity Teams and the
    HR directory share, so it exists whether Teams or HR told us about the person first."""

    class State(models.TextChoices):
        UNKNOWN = "unknown", "Not installed yet"
        INSTALLED = "installed", "Installed"
        UNINSTALLED = "uninstalled", "Uninstalled"
        BLOCKED = "blocked", "Blocked the bot"

    aad_object_id = models.UUIDField("Entra object id", unique=True)
    tenant_id = models.CharField(max_length=64, blank=True)
    user_id = models.CharField("Teams user id (29:)", max_length=500, blank=True)
    conversation_id = models.CharField(max_length=500, blank=True)
    service_url = models.URLField(max_length=500, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.UNKNOWN)
    installed_at = models.DateTimeField(null=True, blank=True)
    installed_by_crier_at = models.DateTimeField(
        null=True, blank=True, help_text="When Crier last installed the app for them (for a campaign): that install "
        "is not theirs, so it sets off no welcome message.")
    last_read_id = models.DecimalField(
        max_digits=30, decimal_places=0, null=True, blank=True, editable=False,
        help_text="The last of the bot's messages Teams reported the person read: a receipt at or below it is news "
        "to nobody.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Teams address"
        verbose_name_plural = "Teams addresses"

    def __str__(self) -> str:
        return f"{self.aad_object_id} ({self.get_state_display()})"


class TeamsTeam(models.Model):
    """A team the bot was added to, learned from the activity Teams sends then: its members can be listed
    (the Bot Connector's paged members) and messaged one to one, installed or not for themselves."""

    team_id = models.CharField("Teams team id", max_length=200, unique=True)
    name = models.CharField(max_length=300, blank=True)
    aad_group_id = models.CharField("Microsoft 365 group id", max_length=64, blank=True)
    tenant_id = models.CharField(max_length=64, blank=True)
    service_url = models.URLField(max_length=500, blank=True)
    installed = models.BooleanField(default=True, help_text="The bot is in the team (until it is removed).")
    installed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = "Teams team"

    def __str__(self) -> str:
        return self.name or self.team_id

"""The campaigns app's models, by what they hold (Django finds them here): ``content`` (people,
audiences, templates, campaigns, opt-outs) and ``access`` (API keys and their calls, staff profiles,
the audit trail)."""

from .access import ApiKey, ApiRequest, AuditEntry, IdempotencyRecord, StaffProfile
from .content import (
    Audience, Campaign, Category, DirectorySync, MessageTemplate, OptOut, Recipient, RecipientSync,
)

__all__ = [
    "ApiKey", "ApiRequest", "Audience", "AuditEntry", "Campaign", "Category", "DirectorySync", "IdempotencyRecord",
    "MessageTemplate",
    "OptOut", "Recipient", "RecipientSync", "StaffProfile",
]

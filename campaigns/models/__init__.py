"""The campaigns app's models, by what they hold (Django finds them here): ``content`` (people,
audiences, templates, campaigns, opt-outs), ``listings`` (the members of a group or team, as listed)
and ``access`` (API keys and their calls, staff profiles, the audit trail)."""

from .access import ApiKey, ApiRequest, AuditEntry, IdempotencyRecord, StaffProfile
from .content import (
    Audience,
    Campaign,
    Category,
    DirectorySync,
    MessageTemplate,
    OptOut,
    Recipient,
    RecipientSync,
)
from .listings import ListedMember, MemberListing

__all__ = [
    "ApiKey", "ApiRequest", "Audience", "AuditEntry", "Campaign", "Category", "DirectorySync", "IdempotencyRecord",
    "ListedMember", "MemberListing", "MessageTemplate",
    "OptOut", "Recipient", "RecipientSync", "StaffProfile",
]

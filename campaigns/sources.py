"""What names an Entra ID group or a Teams team, checked before an audience is saved: a group by its object
id (a GUID), a team by its Teams id (``19:…@thread.tacv2``; older teams ``@thread.skype``)."""

from __future__ import annotations

import re
import uuid

# Teams' own ids are letters, digits and a few marks; nothing here may be a space or end a URL's path.
TEAM_ID = re.compile(r"^19:[^\s/?#%@]{1,170}@thread\.(tacv2|skype)$")


def group_id_normal(value: str) -> str | None:
    """The canonical (lower-case, hyphenated) Entra object id, a group's or a person's, or None if ``value`` is
    not one."""
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        return None


def source_problem(kind: str, source_id: str) -> str | None:
    """Why ``source_id`` cannot name the group or team of an audience of ``kind``, or None."""
    if not source_id:
        return "Choose the group." if kind == "entra_group" else "Choose the team."
    if kind == "entra_group":
        if group_id_normal(source_id) is None or len(source_id.strip()) > 38:  # {braces} at most
            return "An Entra ID group is named by its object id, such as 0d5c1a7e-2f4b-4c9a-9e2d-6b1f3a8c7d10."
        return None
    if not TEAM_ID.match(source_id):
        return "A team is named by its Teams id, such as 19:…@thread.tacv2 (choose it from the teams Crier is in)."
    return None

"""The admin, as the comms staff who run Crier use it: a thin interface over the services and
selectors. State changes go through ``delivery.services``; an ``ApplicationError`` becomes an admin
error message, never a server error."""

from . import audiences, audit, campaigns, changes, directory, keys, people, templates  # noqa: F401  (registers the admin pages)

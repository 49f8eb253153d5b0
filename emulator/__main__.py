"""``python -m emulator [--host H] [--port P] [--state-dir DIR] [--app-id ID] [--app-password PW]
[--tenant-id TID] [--bot-endpoint URL] [--limits on|off] [--auto-install on|off]``

Flags override the environment (EMULATOR_HOST, EMULATOR_PORT, EMULATOR_STATE_DIR, BOT_APP_ID,
BOT_APP_PASSWORD, BOT_TENANT_ID, EMULATOR_BOT_ENDPOINT, EMULATOR_LIMITS, EMULATOR_AUTO_INSTALL).
Exit codes: 0 after a clean stop, 1 when it cannot listen, 2 for bad arguments.
"""

from __future__ import annotations

import sys

from .config import ConfigError, parse_settings
from .server import run


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_settings(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"emulator: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())

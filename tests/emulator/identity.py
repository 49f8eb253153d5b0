"""The bot and tenant the emulator tests start the emulator with."""

APP_ID = "00000000-0000-0000-0000-00000000b07a"
PASSWORD = "test-secret"
TENANT = "11111111-1111-1111-1111-111111111111"

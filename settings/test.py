"""Settings for the test suite: the production settings, with test defaults in the environment."""

import os

os.environ.setdefault("CRIER_ENV", "test")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crier")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("BOT_APP_ID", "00000000-0000-0000-0000-00000000b07a")
os.environ.setdefault("BOT_APP_PASSWORD", "emulator-secret")
os.environ.setdefault("BOT_TENANT_ID", "11111111-1111-1111-1111-111111111111")
# Live-server request threads must not keep connections open past the test database.
os.environ.setdefault("DB_CONN_MAX_AGE", "0")

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The test suite serves no collected static files; WhiteNoise would warn that the folder is missing.
MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("whitenoise.")]  # noqa: F405

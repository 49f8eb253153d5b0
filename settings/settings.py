"""Crier's Django settings. Every value that varies between deployments is read here, from the
environment, through the helpers in ``settings.env``; docs/configuration.md lists each variable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url

from .env import ConfigurationError, env_bool, env_float, env_int, env_list, env_required, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

# "production" (the default), "development" (make demo) or "test" (make test).
CRIER_ENV = env_str("CRIER_ENV", "production")
if CRIER_ENV not in {"production", "development", "test"}:
    raise ConfigurationError(f"CRIER_ENV={CRIER_ENV!r}: use production, development or test")
PRODUCTION = CRIER_ENV == "production"

if PRODUCTION:
    SECRET_KEY = env_required("SECRET_KEY")
else:
    SECRET_KEY = env_str("SECRET_KEY") or f"insecure-{CRIER_ENV}-only-key"
DEBUG = env_bool("DEBUG", default=False)
# Former keys, still accepted for what they signed: the links of sent messages that count clicks (delivery.clicks).
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "campaigns",  # first, so its admin/base_site.html (the "My profile" link) overrides the admin's
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI for /api/docs/, pinned and served as static files
    "delivery",
    "bots",
    "csp",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "campaigns.admin.profile.StaffTimeZoneMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "campaigns.teams_tab.TeamsFramingMiddleware",  # after it: Teams may frame the tab and the admin
    "campaigns.api.audit.ApiAuditMiddleware",
    "axes.middleware.AxesMiddleware",  # last: it answers locked-out logins
]

ROOT_URLCONF = "settings.urls"
WSGI_APPLICATION = "settings.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "campaigns.admin.sign_in.sign_in_context",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crier")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Failed admin logins are throttled per account and address, and per address (django-axes): past the limit, logging in
# is refused, even with the right password, until the cool-off after the last failure; a success forgets
# the failures. NUM_PROXIES trusted proxies in front (see campaigns/client_address.py) say which address.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("LOGIN_COOLOFF_MINUTES", 15.0))
# Locked: an account for the address that guessed it, and an address whatever accounts it tries; never an
# account everywhere (whoever knows a username could keep its owner out). See docs/configuration.md.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "campaigns.client_address.client_address"
AXES_LOCKOUT_CALLABLE = "campaigns.admin.lockout.login_locked_out"
AXES_VERBOSE = False  # no banner on every manage.py command; lockouts are still logged
# Invalid API keys, per address: past API_KEY_FAILURE_LIMIT within the window, 429 until it ends.
API_KEY_FAILURE_LIMIT = env_int("API_KEY_FAILURE_LIMIT", 20)
API_KEY_FAILURE_WINDOW_SECONDS = env_int("API_KEY_FAILURE_WINDOW_SECONDS", 60)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The admin's front-end libraries, installed from the npm registry by `make` (package.json).
NODE_MODULES = BASE_DIR / "node_modules"
STATICFILES_DIRS = [
    ("vendor/adaptivecards", NODE_MODULES / "adaptivecards" / "dist"),
    ("vendor/markdown-it", NODE_MODULES / "markdown-it" / "dist" / "browser"),
    ("vendor/chart.js", NODE_MODULES / "chart.js" / "dist"),
    ("vendor/teams-js", NODE_MODULES / "@microsoft" / "teams-js" / "dist" / "umd"),
]
# Files served at the site's root by WhiteNoise: /favicon.ico.
WHITENOISE_ROOT = BASE_DIR / "settings" / "public"

if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
# HTTPS: in production, HSTS for a year (with subdomains and preload unless told otherwise) and plain-http
# requests redirected, except the probes, which a load balancer or Docker sends over plain http.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", PRODUCTION)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^livez$", r"^readyz$", r"^healthz$"]
# The header a TLS-terminating proxy sets to "https" (and strips from what clients send); empty when none.
_proxy_ssl_header = env_str("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto" if PRODUCTION else "")
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.strip().upper().replace("-", "_"), "https") if _proxy_ssl_header.strip() else None
)
# Trusted proxies in front (the throttles' client address): one when a TLS proxy's header is trusted.
NUM_PROXIES = env_int("NUM_PROXIES", 1 if SECURE_PROXY_SSL_HEADER else 0)
# Browser policies: scripts, styles and fonts from Crier itself only (the admin's libraries are served
# from node_modules as static files, the docs page's from drf-spectacular-sidecar). Styles allow inline
# style attributes, which the admin and the Adaptive Cards renderer write; scripts allow nothing inline.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        # A card may show an image from the organisation's intranet or CDN, as Teams would.
        "img-src": ["'self'", "data:", "https:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
PERMISSIONS_POLICY = {
    feature: []
    for feature in (
        "accelerometer", "autoplay", "camera", "display-capture", "geolocation", "gyroscope", "magnetometer",
        "microphone", "midi", "payment", "publickey-credentials-get", "screen-wake-lock", "usb", "xr-spatial-tracking",
    )
}
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"msal": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}},
}

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["campaigns.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "campaigns.api.pagination.IdCursorPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "campaigns.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["campaigns.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": env_str("API_RATE_LIMIT", "1200/min")},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only, nested no deeper than core.json.MAX_JSON_DEPTH, without NUL characters.
    "DEFAULT_PARSER_CLASSES": ["campaigns.api.parsers.CrierJSONParser"],
    # "?format=" is an ordinary query parameter, not a way to pick a renderer (an unknown one was a 404).
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Crier API",
    "DESCRIPTION": "Proactive one-to-one Microsoft Teams messages for a whole organisation.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs page are public; every operation in it still needs a key.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    # The docs page's Swagger UI comes from drf-spectacular-sidecar's static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "campaigns.api.schema.postprocess"],
}

# --- Redis and Celery ------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# The cache holds the API's per-key rate counters, shared by every web process.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
# /readyz (and /healthz) give PostgreSQL and Redis this long each to answer.
HEALTH_CHECK_TIMEOUT_SECONDS = env_float("HEALTH_CHECK_TIMEOUT_SECONDS", 2.0)
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_PREFETCH_MULTIPLIER", 8)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_WORKER_CONSUMER = "settings.celery:Consumer"  # survives losing Redis (settings/celery.py)
# Separate queues so a large fan-out never delays a scheduled launch or a bot reply.
CELERY_TASK_ROUTES = {
    "delivery.tasks.deliver": {"queue": "deliveries"},
    "delivery.tasks.*": {"queue": "control"},
}
# Celery closes Django's database connection around every task unless told to reuse it.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_BEAT_SCHEDULE = {
    "feed-deliveries": {
        "task": "delivery.tasks.feed_deliveries",
        "schedule": env_float("FEED_INTERVAL_SECONDS", 1.0),
    },
    "reconcile": {
        "task": "delivery.tasks.reconcile",
        "schedule": env_float("RECONCILE_INTERVAL_SECONDS", 15.0),
    },
    "launch-due-campaigns": {
        "task": "delivery.tasks.launch_due_campaigns",
        "schedule": env_float("SCHEDULER_INTERVAL_SECONDS", 5.0),
    },
    "send-due-reminders": {
        "task": "delivery.tasks.send_due_reminders",
        "schedule": env_float("SCHEDULER_INTERVAL_SECONDS", 5.0),
    },
    "complete-finished-campaigns": {
        "task": "delivery.tasks.complete_finished_campaigns",
        "schedule": env_float("COMPLETION_INTERVAL_SECONDS", 5.0),
    },
    "dispatch-webhooks": {
        "task": "delivery.tasks.dispatch_webhooks",
        "schedule": env_float("WEBHOOK_INTERVAL_SECONDS", 2.0),
    },
    "forget-expired-idempotency-keys": {
        "task": "campaigns.tasks.forget_expired_idempotency_keys",
        "schedule": 3600.0,
    },
    "reconcile-message-changes": {
        "task": "delivery.tasks.reconcile_message_changes",
        "schedule": env_float("RECONCILE_INTERVAL_SECONDS", 15.0),
    },
    "welcome-new-starters": {
        "task": "delivery.tasks.welcome_new_starters",
        "schedule": env_float("WELCOME_INTERVAL_SECONDS", 60.0),
    },
}

# --- Teams / Bot Framework -------------------------------------------------------------------
BOT_APP_ID = env_str("BOT_APP_ID", "")
BOT_NAME = env_str("BOT_NAME", "Crier")
if PRODUCTION:
    BOT_APP_PASSWORD = env_required("BOT_APP_PASSWORD")
else:
    BOT_APP_PASSWORD = env_str("BOT_APP_PASSWORD", "")
BOT_TENANT_ID = env_str("BOT_TENANT_ID", "")
BOT_AUTHORITY = env_str(
    "BOT_AUTHORITY", f"https://login.microsoftonline.com/{BOT_TENANT_ID or 'botframework.com'}"
)
BOT_TOKEN_SCOPE = env_str("BOT_TOKEN_SCOPE", "https://api.botframework.com/.default")
BOT_OPENID_METADATA_URL = env_str(
    "BOT_OPENID_METADATA_URL", "https://login.botframework.com/v1/.well-known/openidconfiguration"
)
BOT_TOKEN_ISSUER = env_str("BOT_TOKEN_ISSUER", "https://api.botframework.com")
TEAMS_SERVICE_URL = env_str("TEAMS_SERVICE_URL", "https://smba.trafficmanager.net/teams/")
BOT_HTTP_TIMEOUT_SECONDS = env_float("BOT_HTTP_TIMEOUT_SECONDS", 15.0)

# --- Microsoft Graph, and people from Entra ID (bots/graph.py, campaigns/entra_sync.py) ------------
GRAPH_BASE_URL = (env_str("GRAPH_BASE_URL", "https://graph.microsoft.com/v1.0") or "").rstrip("/")
# Graph's tokens come from the organisation's own tenant, never botframework.com: by default the bot's
# authority host with BOT_TENANT_ID (a multi-tenant bot sets GRAPH_AUTHORITY itself).
_authority = urlsplit(BOT_AUTHORITY)
_tenant_authority = f"{_authority.scheme}://{_authority.netloc}/{BOT_TENANT_ID}" if BOT_TENANT_ID else ""
GRAPH_AUTHORITY = env_str("GRAPH_AUTHORITY", _tenant_authority)
# The scope is Graph's own address (https://graph.microsoft.us in GCC High, for one) with /.default.
_graph = urlsplit(GRAPH_BASE_URL)
GRAPH_TOKEN_SCOPE = env_str("GRAPH_TOKEN_SCOPE", f"{_graph.scheme}://{_graph.netloc}/.default")
GRAPH_HTTP_TIMEOUT_SECONDS = env_float("GRAPH_HTTP_TIMEOUT_SECONDS", 30.0)
# How long, at most, to honour one Retry-After of Graph's before giving up this run.
GRAPH_MAX_RETRY_AFTER_SECONDS = env_float("GRAPH_MAX_RETRY_AFTER_SECONDS", 120.0)
# Installing the app for people who lack it (delivery/installing.py): new campaigns' default, and Graph's pace.
INSTALL_APP_DEFAULT = env_bool("INSTALL_APP_DEFAULT", False)
GRAPH_INSTALLS_PER_SECOND = env_float("GRAPH_INSTALLS_PER_SECOND", 27.5)  # Graph allows 30 per app and tenant
# Urgent notices in the activity feed (delivery/notifying.py): Graph's pace (it takes a few calls a second, each
# to up to 100 people), and where Teams' deep links point (https://teams.microsoft.us in GCC High, for one).
GRAPH_NOTICES_PER_SECOND = env_float("GRAPH_NOTICES_PER_SECOND", 1.5)
TEAMS_DEEP_LINK_BASE = (env_str("TEAMS_DEEP_LINK_BASE", "https://teams.microsoft.com") or "").rstrip("/")
if min(GRAPH_INSTALLS_PER_SECOND, GRAPH_NOTICES_PER_SECOND) <= 0:
    raise ConfigurationError("GRAPH_INSTALLS_PER_SECOND and GRAPH_NOTICES_PER_SECOND must be above 0")

# --- Staff sign-in with Entra ID, and the admin in a Teams tab (campaigns/sign_in.py, campaigns/teams_tab.py) --
# Staff sign in with their work accounts through the bot's app registration; their roles come from app roles or
# groups ("value=role,...": author, approver, viewer, administrator). LOCAL_PASSWORDS off: no password signs in.
STAFF_SIGN_IN = env_bool("STAFF_SIGN_IN", False)
STAFF_SIGN_IN_AUTHORITY = env_str("STAFF_SIGN_IN_AUTHORITY", GRAPH_AUTHORITY)
STAFF_SIGN_IN_ROLES = env_str("STAFF_SIGN_IN_ROLES", "Crier.Administrator=administrator,Crier.Approver=approver,"
                              "Crier.Author=author,Crier.Viewer=viewer")
LOCAL_PASSWORDS = env_bool("LOCAL_PASSWORDS", True)
# How long a sign-in with Entra ID lasts: then the person signs in again, and their roles are read again.
STAFF_SIGN_IN_SESSION_HOURS = env_float("STAFF_SIGN_IN_SESSION_HOURS", 8.0)
if not LOCAL_PASSWORDS and not STAFF_SIGN_IN:
    raise ConfigurationError("LOCAL_PASSWORDS=false needs STAFF_SIGN_IN=true, or nobody could sign in")
if not LOCAL_PASSWORDS:
    AUTHENTICATION_BACKENDS.remove("django.contrib.auth.backends.ModelBackend")
AUTHENTICATION_BACKENDS.append("campaigns.sign_in.EntraBackend")  # keeps Entra ID's sessions, checks no password
# The app package's personal tab opens the admin inside Teams (on by default with STAFF_SIGN_IN): Teams' own sites
# may then frame it, and in production the session's cookies are sent in that frame (SameSite=None, so Secure;
# the CSRF token still guards writes).
TEAMS_TAB = env_bool("TEAMS_TAB", STAFF_SIGN_IN)
TEAMS_FRAME_ANCESTORS = env_list("TEAMS_FRAME_ANCESTORS", [
    "https://teams.microsoft.com", "https://*.teams.microsoft.com", "https://teams.cloud.microsoft",
    "https://*.cloud.microsoft", "https://*.office.com", "https://*.microsoft365.com", "https://*.skype.com",
    "https://teams.microsoft.us", "https://*.teams.microsoft.us"])
if TEAMS_TAB and PRODUCTION:
    if not (SESSION_COOKIE_SECURE and CSRF_COOKIE_SECURE):
        raise ConfigurationError("TEAMS_TAB needs SESSION_COOKIE_SECURE and CSRF_COOKIE_SECURE: browsers drop a "
                                 "SameSite=None cookie that is not Secure")
    SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "None"
# People from Entra ID: on, beat syncs them every ENTRA_SYNC_INTERVAL_SECONDS, and these fields are Entra ID's.
ENTRA_SYNC = env_bool("ENTRA_SYNC", False)
ENTRA_SYNC_INTERVAL_SECONDS = env_float("ENTRA_SYNC_INTERVAL_SECONDS", 3600.0)
if ENTRA_SYNC:
    CELERY_BEAT_SCHEDULE["sync-entra"] = {"task": "campaigns.tasks.sync_entra", "schedule": ENTRA_SYNC_INTERVAL_SECONDS}
# Which of a person's fields Entra ID owns, and the Graph property each comes from ("field=property,...";
# a property inside another is written with a dot: attributes.cost_center=employeeOrgData.costCenter).
# The HR API may not change these fields while the sync is on; the sync never writes any other field.
ENTRA_SYNC_FIELDS = env_str(
    "ENTRA_SYNC_FIELDS",
    "display_name=displayName,first_name=givenName,last_name=surname,email=mail,upn=userPrincipalName,"
    "department=department,job_title=jobTitle,location=officeLocation,country=usageLocation,"
    "locale=preferredLanguage",
)
# The kinds of account (Graph's userType) that are people to message: guests are not, unless listed.
ENTRA_SYNC_USER_TYPES = env_list("ENTRA_SYNC_USER_TYPES", ["Member"])
# The Graph property that holds the HR system's id, for people Entra ID tells Crier of first; without one
# a person's external id is "entra:<object id>".
ENTRA_SYNC_EXTERNAL_ID = env_str("ENTRA_SYNC_EXTERNAL_ID", "employeeId")

# --- The Teams app package (python manage.py teams_app_package; bots/app_package.py) --------------
# The app's id in the organisation's catalog: keep it once the app is uploaded (a new id is a new app).
# Empty: a UUID derived from BOT_APP_ID, so it stays the same for one bot.
TEAMS_APP_ID = env_str("TEAMS_APP_ID", "")
TEAMS_APP_VERSION = env_str("TEAMS_APP_VERSION", "1.0.0")
TEAMS_APP_SHORT_NAME = env_str("TEAMS_APP_SHORT_NAME", BOT_NAME)
TEAMS_APP_FULL_NAME = env_str("TEAMS_APP_FULL_NAME", f"{BOT_NAME}: announcements from your organisation")
TEAMS_APP_SHORT_DESCRIPTION = env_str("TEAMS_APP_SHORT_DESCRIPTION", "Announcements from your organisation, to you.")
TEAMS_APP_FULL_DESCRIPTION = env_str("TEAMS_APP_FULL_DESCRIPTION", f"{BOT_NAME} brings you your organisation's "
                                     "announcements in a one-to-one chat. Type stop to opt out, start to opt back in.")
TEAMS_APP_DEVELOPER_NAME = env_str("TEAMS_APP_DEVELOPER_NAME", "Your organisation")
TEAMS_APP_WEBSITE_URL = env_str("TEAMS_APP_WEBSITE_URL", "")  # empty: PUBLIC_BASE_URL
TEAMS_APP_PRIVACY_URL = env_str("TEAMS_APP_PRIVACY_URL", "")  # empty: the website
TEAMS_APP_TERMS_URL = env_str("TEAMS_APP_TERMS_URL", "")  # empty: the website
TEAMS_APP_ACCENT_COLOR = env_str("TEAMS_APP_ACCENT_COLOR", "#4F52B2")
# Extra domains the app may open (the public URL's host is always there), comma-separated.
TEAMS_APP_VALID_DOMAINS = env_list("TEAMS_APP_VALID_DOMAINS", [])
# Your own icons instead of the generated ones: a 192x192 PNG, and a 32x32 PNG, white on transparent.
TEAMS_APP_COLOR_ICON = env_str("TEAMS_APP_COLOR_ICON", "")
TEAMS_APP_OUTLINE_ICON = env_str("TEAMS_APP_OUTLINE_ICON", "")

# --- Pacing (see bots/pacing.py) --------------------------------------------------------
TEAMS_PACING = env_bool("TEAMS_PACING", True)
TEAMS_RATE_LIMIT_PER_SECOND = env_float("TEAMS_RATE_LIMIT_PER_SECOND", 50.0)
TEAMS_PACE_FRACTION = env_float("TEAMS_PACE_FRACTION", 0.97)
TEAMS_PACE_MIN_FRACTION = env_float("TEAMS_PACE_MIN_FRACTION", 0.2)
TEAMS_PACE_DECREASE = env_float("TEAMS_PACE_DECREASE", 0.8)
TEAMS_PACE_RECOVERY_PER_SECOND = env_float("TEAMS_PACE_RECOVERY_PER_SECOND", 0.25)

# --- Recipients ------------------------------------------------------------------------------
# A person's free attributes (see campaigns/attributes.py and docs/api.md): at most this many keys,
# characters per value, and characters of keys and values together.
RECIPIENT_ATTRIBUTES_MAX_KEYS = env_int("RECIPIENT_ATTRIBUTES_MAX_KEYS", 50)
RECIPIENT_ATTRIBUTE_MAX_LENGTH = env_int("RECIPIENT_ATTRIBUTE_MAX_LENGTH", 1000)
RECIPIENT_ATTRIBUTES_MAX_CHARS = env_int("RECIPIENT_ATTRIBUTES_MAX_CHARS", 10_000)

# --- Delivery --------------------------------------------------------------------------------
DELIVERY_MAX_ATTEMPTS = env_int("DELIVERY_MAX_ATTEMPTS", 8)
# An announcement to more people than this needs a second person's approval (see campaigns.approvals).
APPROVAL_THRESHOLD = env_int("APPROVAL_THRESHOLD", 500)
# The window in which the direct messages (and tests) a key or staff member sends with one template count.
APPROVAL_WINDOW_HOURS = env_int("APPROVAL_WINDOW_HOURS", 24)
# Where people reach this Crier (https://crier.example.com), for links in Teams messages.
PUBLIC_BASE_URL = (env_str("PUBLIC_BASE_URL", "") or "").rstrip("/")
# Chains of tasks editing or deleting one campaign's sent messages at once (see delivery.message_change_sending).
MESSAGE_CHANGE_CONCURRENCY = env_int("MESSAGE_CHANGE_CONCURRENCY", 4)
DELIVERY_BACKOFF_BASE_SECONDS = env_float("DELIVERY_BACKOFF_BASE_SECONDS", 2.0)
DELIVERY_BACKOFF_MAX_SECONDS = env_float("DELIVERY_BACKOFF_MAX_SECONDS", 300.0)
# Feeding: the queues hold what the workers end (send or fail) in FEED_AHEAD_SECONDS, at least
# FEED_LOW_WATER and at most FEED_HIGH_WATER messages (about 1 KB of Redis each).
FEED_HIGH_WATER = env_int("FEED_HIGH_WATER", 4000)
FEED_LOW_WATER = env_int("FEED_LOW_WATER", 200)
FEED_AHEAD_SECONDS = env_float("FEED_AHEAD_SECONDS", 3.0)
# Materialisation: a launch writes the rows of this many recipient ids in its own transaction; a
# task writes the rest a range at a time, each committed, by this many database connections at
# once (see delivery.materialising.campaign_materialise). More than one did not write faster on a 2-core
# machine shared with the workers (docs/benchmarks.md).
MATERIALISE_CHUNK_SIZE = env_int("MATERIALISE_CHUNK_SIZE", 50_000)
MATERIALISE_RANGE_SIZE = env_int("MATERIALISE_RANGE_SIZE", 200_000)
MATERIALISE_CONNECTIONS = env_int("MATERIALISE_CONNECTIONS", 1)
# Recovery: a delivery claimed longer ago than the lease (longer than the task's hard time limit) was lost.
DELIVERY_TASK_TIME_LIMIT_SECONDS = env_int("DELIVERY_TASK_TIME_LIMIT_SECONDS", 150)
DELIVERY_LEASE_SECONDS = env_int("DELIVERY_LEASE_SECONDS", 240)
RETRY_GRACE_SECONDS = env_int("RETRY_GRACE_SECONDS", 30)
DELIVERY_DB_RETRY_SECONDS = env_float("DELIVERY_DB_RETRY_SECONDS", 60.0)
# Webhooks (see delivery/webhooks.py).
WEBHOOK_BATCH = env_int("WEBHOOK_BATCH", 500)
WEBHOOK_MAX_BATCHES_PER_TICK = env_int("WEBHOOK_MAX_BATCHES_PER_TICK", 20)
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0)
# Webhooks never go to loopback, link-local, metadata or other non-public addresses; private
# networks (RFC 1918, 100.64.0.0/10, fc00::/7) only when this is on (an HR system on the same network).
WEBHOOK_ALLOW_PRIVATE_TARGETS = env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
WEBHOOK_ALLOW_LOOPBACK_TARGETS = False  # the test suite's local receivers only; not read from the environment
CANCEL_DRAIN_SECONDS = env_float("CANCEL_DRAIN_SECONDS", 20.0)  # control: how long a cancel waits for sends
CAMPAIGN_PAUSE_ERROR_RATE = env_float("CAMPAIGN_PAUSE_ERROR_RATE", 0.5)
CAMPAIGN_PAUSE_MIN_FAILURES = env_int("CAMPAIGN_PAUSE_MIN_FAILURES", 50)

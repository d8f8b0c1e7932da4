"""Settings, all read from the environment (WEBVIRT_*, DATABASE_URL, REDIS_URL)."""

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("WEBVIRT_STATE_DIR", BASE_DIR / ".state"))


def _private_dir(path: Path, mode: int = 0o700) -> None:
    """Make `path` a folder whose contents only its owner can list or read."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    if path.stat().st_uid == os.geteuid():  # a folder someone else owns is theirs to set up
        path.chmod(mode)


def _private_file(path: Path) -> None:
    """Create `path` readable by its owner only (or make an existing one so), before anything writes to it."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    if path.stat().st_uid == os.geteuid():
        path.chmod(0o600)


# 0711: nobody else may list or read it, but other users may pass through to a path they are given
# (QEMU, as its own user, reads the test guest's image under .state/guest). Everything secret in it
# has its own 0600 file or 0700 folder: the keys, the database, keys/, uploads/, downloads/.
_private_dir(STATE_DIR, 0o711)
# Large uploads are spooled where their upload job keeps them, so keeping one is a rename, not a
# second copy (webvirt.install.services.save_upload).
FILE_UPLOAD_TEMP_DIR = str(STATE_DIR / "uploads")
os.makedirs(FILE_UPLOAD_TEMP_DIR, mode=0o700, exist_ok=True)


def _env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def _persistent_secret(name: str, env: str) -> str:
    """A secret from the environment, else one generated once and kept in the state folder.

    Generating it once (instead of per start) keeps sessions and encrypted credentials valid
    across restarts of a development install.
    """
    if os.environ.get(env):
        return os.environ[env]
    path = STATE_DIR / name
    if not path.exists():
        # Written 0600 from the first byte (never readable by others, not even briefly), under a
        # temporary name and linked into place, so that web and worker starting together agree on one.
        spare = path.with_name(f".{name}.{os.getpid()}")
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48))
        try:
            os.link(spare, path)
        except FileExistsError:
            pass  # another process made it first; use theirs
        finally:
            spare.unlink()
    return path.read_text().strip()


SECRET_KEY = _persistent_secret("secret_key", "WEBVIRT_SECRET_KEY")
# Credentials (SSH keys, SASL passwords) are encrypted with a key of their own, so that
# rotating the session secret does not make stored host credentials unreadable.
WEBVIRT_ENCRYPTION_KEY = _persistent_secret("encryption_key", "WEBVIRT_ENCRYPTION_KEY")
DEBUG = _env_bool("WEBVIRT_DEBUG")
ALLOWED_HOSTS = os.environ.get("WEBVIRT_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("WEBVIRT_CSRF_TRUSTED_ORIGINS", "").split(",") if o]
# Reverse proxies whose X-Forwarded-For is believed (for the audit trail's client address).
WEBVIRT_TRUSTED_PROXIES = [a for a in os.environ.get("WEBVIRT_TRUSTED_PROXIES", "").split(",") if a]

# --- Production hardening ------------------------------------------------------------------------
# WEBVIRT_HTTPS=1: the site is reached over HTTPS only (directly or through a TLS proxy). Cookies
# are then never sent over plain HTTP, and browsers are told (HSTS) to use HTTPS for a year.
WEBVIRT_HTTPS = _env_bool("WEBVIRT_HTTPS")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = WEBVIRT_HTTPS
SESSION_COOKIE_HTTPONLY = True  # scripts never need the session cookie
if WEBVIRT_TRUSTED_PROXIES:
    # Behind a proxy that terminates TLS, the request reaching us is HTTP; the proxy says it was
    # HTTPS. Believed only when proxies are configured (the proxy must set, not pass on, the header).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HSTS goes out only on secure requests (SecurityMiddleware), so a plain-HTTP development server
# never pins a browser to HTTPS; subdomains are left alone unless asked, as they may not serve HTTPS.
_hsts = WEBVIRT_HTTPS or bool(WEBVIRT_TRUSTED_PROXIES)
SECURE_HSTS_SECONDS = int(os.environ.get("WEBVIRT_HSTS_SECONDS", "31536000")) if _hsts else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("WEBVIRT_HSTS_INCLUDE_SUBDOMAINS")
SECURE_CONTENT_TYPE_NOSNIFF = True
# No page is meant to be framed (the console's own window is a window, not an iframe): no clickjacking.
X_FRAME_OPTIONS = "DENY"
# Request bodies (webvirt.bodylimit, before anything reads them): small everywhere (the largest
# ordinary request is a 1 MiB XML edit), large only for administrators on the upload routes.
WEBVIRT_MAX_BODY_BYTES = int(os.environ.get("WEBVIRT_MAX_BODY_BYTES", str(2 * 1024**2)))
WEBVIRT_MAX_UPLOAD_BYTES = int(os.environ.get("WEBVIRT_MAX_UPLOAD_BYTES", str(64 * 1024**3)))
# --- end of production hardening -----------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "webvirt.accounts",
    "webvirt.hosts",
    "webvirt.domains",
    "webvirt.events",
    "webvirt.consoles",
    "webvirt.jobs",
    "webvirt.catalog",
    "webvirt.networks",
    "webvirt.storage",
    "webvirt.install",
    "webvirt.snapshots",
    "webvirt.migration",
    "webvirt.metrics",
    "webvirt.waves",
    "webvirt.people",
    "webvirt.oidc",
    "webvirt.directory",
]

MIDDLEWARE = [
    # Only at start-up, then out of the chain: keeps SQLite's WAL from being checkpointed at every request's end.
    "webvirt.sqlitekeep.KeepSQLiteOpen",
    "webvirt.accounts.middleware.TrustedForwardingMiddleware",  # first: nothing may read a forged header
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "webvirt.ui.ErrorBoundary",  # VirtError, Denied and ValidationError from a page: a sentence, never a 500
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "webvirt.accounts.middleware.LoginRequiredMiddleware",
]

ROOT_URLCONF = "webvirt.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
ASGI_APPLICATION = "webvirt.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{STATE_DIR / 'db.sqlite3'}"),
        conn_max_age=60,
    )
}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Web requests run on a few threads that stay (webvirt.handler), but jobs, consumers and helpers start
    # threads that come and go, whose persistent connections would pile up; a pool gives each a ready
    # connection instead of a new one (~10 ms).
    # Every process has its own pool: WEBVIRT_DB_POOL_SIZE is its ceiling, set per process kind so that
    # all of them together stay under PostgreSQL's max_connections (docs/operations.md has the sum).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1, "max_size": max(1, int(os.environ.get("WEBVIRT_DB_POOL_SIZE", "20"))), "timeout": 10}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    if DATABASES["default"]["NAME"] not in ("", ":memory:") and Path(DATABASES["default"]["NAME"]).parent.is_dir():
        # SQLite would create the database with the process's umask (often world-readable); made
        # here first as 0600 (an empty file is an empty database), and SQLite gives its -wal and
        # -shm files the database's own mode.
        _private_file(Path(DATABASES["default"]["NAME"]))
    # WAL lets the web process read while a worker writes; the timeout rides out short locks.
    # IMMEDIATE: a transaction takes the write lock when it begins, so a read-then-write one
    # (update_or_create) waits its turn instead of failing at once with "database is locked" when
    # another process wrote after its read (SQLite cannot upgrade a stale read to a write).
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;",
                                       "transaction_mode": "IMMEDIATE"}
    # Closed after each use, in threads that come and go (WebSocket consumers, jobs' helpers); the web
    # process's request threads keep theirs open between requests (webvirt.handler).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, so live-server tests (other threads, other processes) see the same data;
    # one per test run, so runs side by side do not share it.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("WEBVIRT_TEST_DB") or str(STATE_DIR / f"test-{os.getpid()}.sqlite3")
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", f"unix://{STATE_DIR / 'redis.sock'}")
# Keys in Redis (channel layer groups, watcher leases) start with this, so that several
# installations, or a test run beside a development server, can share one Redis.
REDIS_PREFIX = os.environ.get("WEBVIRT_REDIS_PREFIX", "webvirt")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # channels-redis waits for messages with a 5 s BZPOPMIN; redis-py 8's default 5 s socket timeout
        # races that reply and kills every quiet consumer (and its WebSocket), so allow longer.
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}], "prefix": f"{REDIS_PREFIX}:asgi"},
    }
}
CELERY_BROKER_URL = REDIS_URL.replace("unix://", "redis+socket://", 1)
CELERY_RESULT_BACKEND = None
# Its own job queue per installation (and per test run), so that workers never take another's jobs.
CELERY_TASK_DEFAULT_QUEUE = f"{REDIS_PREFIX}:jobs"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = _env_bool("WEBVIRT_TASKS_EAGER")
# Clone waves start within this many seconds of their start time (the beat entry below).
WEBVIRT_WAVES_INTERVAL = max(1, int(os.environ.get("WEBVIRT_WAVES_INTERVAL", "30")))
# Memory all warm machines (booted ahead, not yet handed out) of all templates may hold together.
WEBVIRT_WARM_BUDGET_MIB = int(os.environ.get("WEBVIRT_WARM_BUDGET_MIB", "4096"))
# How often beat runs the reaper of jobs whose worker died, and the removal of expired clones (seconds).
WEBVIRT_REAP_INTERVAL = max(1, int(os.environ.get("WEBVIRT_REAP_INTERVAL", "15")))
WEBVIRT_EXPIRE_INTERVAL = max(1, int(os.environ.get("WEBVIRT_EXPIRE_INTERVAL", "30")))
CELERY_BEAT_SCHEDULE = {
    # A job whose worker died is failed and cleaned up within about a minute.
    "reap-stale-jobs": {"task": "webvirt.jobs.reap", "schedule": float(WEBVIRT_REAP_INTERVAL)},
    # Expired clones are removed within half a minute of their expiry.
    "expire-clones": {"task": "webvirt.catalog.expire", "schedule": float(WEBVIRT_EXPIRE_INTERVAL)},
    # Domains' addresses from DHCP leases reach the list within half a minute of a lease change.
    "refresh-addresses": {"task": "webvirt.domains.refresh_addresses", "schedule": 30.0},
    # Usage history: the minute, half-hour and six-hour tiers rolled up, old rows pruned.
    "metrics-rollup": {"task": "webvirt.metrics.rollup", "schedule": 60.0},
    # Warm pools below their size (a failed boot, a budget that was full) are refilled within a minute.
    "warm-pools": {"task": "webvirt.catalog.warm_refill", "schedule": 60.0},
    # Scheduled clone waves: made at their start, checked for boot, counted (webvirt.waves).
    "waves-tick": {"task": "webvirt.waves.tick", "schedule": float(WEBVIRT_WAVES_INTERVAL)},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Local accounts first; then the directory and the identity provider, each doing nothing until an
# administrator has set it up (People → Sign-in).
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "webvirt.directory.backend.LdapBackend",
    "webvirt.oidc.backend.OidcBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# API tokens and throttling ------------------------------------------------------------------------
# API tokens are kept as SHA-256 digests (webvirt.accounts.tokens). Sign-ins and API tokens are
# refused (429) for the rest of a window once an address (or, for sign-ins, a user name) has had
# this many failures in it; counted in Redis, so all web processes share the counts.
WEBVIRT_THROTTLE_FAILURES = int(os.environ.get("WEBVIRT_THROTTLE_FAILURES", "10"))
WEBVIRT_THROTTLE_WINDOW = 60  # seconds
# --- end of API tokens and throttling -------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("WEBVIRT_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static", ("vendor", BASE_DIR / "node_modules")]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an unauthenticated API request then answers 401 with WWW-Authenticate.
        "webvirt.accounts.tokens.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["webvirt.accounts.policy.ApiPermission"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "webvirt.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "webvirt API",
    "DESCRIPTION": "Hosts, domains and their lifecycle on libvirt.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs are for people who have an account: anonymous requests answer 401.
    "SERVE_PERMISSIONS": ["webvirt.accounts.policy.ApiPermission"],
    # Swagger UI and ReDoc from our own static files (drf-spectacular-sidecar), not a CDN: the docs
    # work without internet, and no third party's script runs in the administrators' origin.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# How long a web request waits for libvirt before it tells the user the host is not answering.
# Usage figures: one collector pass per host this often (seconds, at least 2); a removed domain's history
# is kept this many days; /metrics (Prometheus) answers these addresses without a token (comma-separated
# addresses or networks).
WEBVIRT_METRICS_INTERVAL = max(2, int(os.environ.get("WEBVIRT_METRICS_INTERVAL", "10")))
WEBVIRT_METRICS_KEEP_REMOVED_DAYS = int(os.environ.get("WEBVIRT_METRICS_KEEP_REMOVED_DAYS", "7"))
WEBVIRT_METRICS_ALLOW = [a for a in os.environ.get("WEBVIRT_METRICS_ALLOW", "").split(",") if a.strip()]

WEBVIRT_LIBVIRT_TIMEOUT = float(os.environ.get("WEBVIRT_LIBVIRT_TIMEOUT", "5"))
# Threads per web process that run requests (webvirt.handler). Each more thread than cores costs every request
# CPU in contention for the GIL (50 clients: 2 threads 12 ms, 4 threads 13-14 ms, 16 threads 16 ms of CPU per list
# request); fewer make requests wait behind pages that wait on slow hosts (a dead one fails fast after its first
# timeout). More web processes (WEBVIRT_WEB_WORKERS) add CPU; more threads do not.
WEBVIRT_WEB_THREADS = max(1, int(os.environ.get("WEBVIRT_WEB_THREADS", "4")))
# Optional console gateway (websockify with webvirt's token plugin): VNC tickets then point at
# "<this URL>?token=<ticket>"; a path ("/console-gateway/") means the same origin through a proxy.
WEBVIRT_CONSOLE_GATEWAY_URL = os.environ.get("WEBVIRT_CONSOLE_GATEWAY_URL", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("WEBVIRT_LOG_LEVEL", "INFO")},
}

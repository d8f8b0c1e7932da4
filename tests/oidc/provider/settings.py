"""A small OpenID Connect provider for webvirt's tests: django-oauth-toolkit with OIDC on, RS256 ID tokens
signed with an RSA key the test run generated, a `groups` claim, and three confidential clients whose
tokens are good, expired or tampered with (see validators.py and views.py).

Started by tests/oidc/conftest.py with OIDC_PROVIDER_DIR (its database and key) and OIDC_PROVIDER_PORT.
"""

import os
from pathlib import Path

STATE = Path(os.environ["OIDC_PROVIDER_DIR"])
PORT = int(os.environ["OIDC_PROVIDER_PORT"])

SECRET_KEY = "webvirt-test-provider-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
    "tests.oidc.provider",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "tests.oidc.provider.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(STATE / "provider.sqlite3"),
                         "OPTIONS": {"timeout": 20}}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # test users only: fast
USE_TZ = True
LOGIN_URL = "/accounts/login/"
# Cookies are per host, not per port: a browser test reaches webvirt and this provider both on 127.0.0.1,
# so their session and CSRF cookies must not share a name.
SESSION_COOKIE_NAME = "provider_sessionid"
CSRF_COOKIE_NAME = "provider_csrftoken"

OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": (STATE / "key.pem").read_text(),
    "OIDC_ISS_ENDPOINT": f"http://127.0.0.1:{PORT}/o",
    "OAUTH2_VALIDATOR_CLASS": "tests.oidc.provider.validators.Validator",
    "SCOPES": {"openid": "OpenID Connect", "email": "E-mail address", "profile": "Name and user name"},
    "PKCE_REQUIRED": True,
}

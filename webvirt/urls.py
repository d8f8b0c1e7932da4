from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from webvirt.accounts.views import ThrottledLoginView
from webvirt.metrics.prometheus import metrics_view
from webvirt.oidc.urls import signin_patterns as oidc_signin

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="domains:list", permanent=False)),
    # Our login page (429 after too many failures), token and profile pages before Django's other auth routes.
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    # OpenID Connect's way in and back: under the login page's path, which visitors reach signed out.
    path("accounts/login/oidc/", include((oidc_signin, "oidc_signin"))),
    path("accounts/tokens/", include("webvirt.accounts.token_urls")),
    path("accounts/profile/", include("webvirt.accounts.profile_urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("favicon.ico", RedirectView.as_view(url="/static/img/favicon.svg", permanent=True)),
    path("api/v1/", include(("webvirt.api", "api"))),
    path("metrics", metrics_view, name="metrics"),  # Prometheus: its own token or address check
    path("audit/", include("webvirt.accounts.urls")),
    path("consoles/", include("webvirt.consoles.urls")),
    # Before domains/: its <pk>/<verb>/ route would take <pk>/snapshots/ for a lifecycle action.
    path("domains/<int:pk>/snapshots/", include("webvirt.snapshots.urls")),
    path("", include("webvirt.migration.urls")),
    path("domains/", include("webvirt.domains.urls")),
    path("hosts/", include("webvirt.hosts.urls")),
    path("install/", include("webvirt.install.urls")),
    path("jobs/", include("webvirt.jobs.urls")),
    path("networks/", include("webvirt.networks.urls")),
    path("storage/", include("webvirt.storage.urls")),
    path("templates/", include("webvirt.catalog.urls")),
    path("waves/", include("webvirt.waves.urls")),
    path("people/oidc/", include("webvirt.oidc.urls")),
    path("people/ldap/", include("webvirt.directory.urls")),
    path("people/", include("webvirt.people.urls")),
]

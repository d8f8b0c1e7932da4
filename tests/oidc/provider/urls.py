from django.contrib.auth.views import LoginView
from django.urls import include, path

from tests.oidc.provider.views import TokenView

urlpatterns = [
    path("o/token/", TokenView.as_view()),  # before the toolkit's own token route, which it replaces
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("accounts/login/", LoginView.as_view(), name="login"),
]

from django.urls import path

from webvirt.oidc import views

app_name = "oidc"
urlpatterns = [path("", views.settings_page, name="settings")]

# The sign-in's two steps, mounted under the login page's path (open to visitors who are not signed in)
# with the namespace "oidc_signin" by webvirt/urls.py.
signin_patterns = [
    path("", views.SignInStart.as_view(), name="start"),
    path("callback/", views.SignInCallback.as_view(), name="callback"),
]

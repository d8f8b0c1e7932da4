from django.urls import path

from webvirt.accounts import views

# The signed-in person's own page (Django's default LOGIN_REDIRECT_URL path, /accounts/profile/).
app_name = "me"
urlpatterns = [
    path("", views.profile, name="profile"),
    path("ssh-keys/<int:pk>/delete/", views.ssh_key_delete, name="ssh_key_delete"),
]

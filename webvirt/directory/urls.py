from django.urls import path

from webvirt.directory import views

app_name = "directory"
urlpatterns = [
    path("", views.ldap_settings, name="settings"),
    path("test/", views.ldap_test, name="test"),
]

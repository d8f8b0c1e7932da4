from django.urls import path

from webvirt.install import views

app_name = "install"
urlpatterns = [
    path("new/", views.install_new, name="new"),
    path("upload/", views.upload_iso, name="upload"),
]

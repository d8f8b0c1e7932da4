from django.urls import path

from webvirt.snapshots import views

app_name = "snapshots"
urlpatterns = [
    path("", views.panel, name="panel"),
    path("take/", views.take, name="take"),
    path("reset/", views.reset, name="reset"),
    path("<str:name>/revert/", views.revert, name="revert"),
    path("<str:name>/delete/", views.delete, name="delete"),
]

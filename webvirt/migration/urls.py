from django.urls import path

from webvirt.migration import views

app_name = "migration"
urlpatterns = [
    path("domains/<int:pk>/migrate/", views.migrate, name="migrate"),
    path("domains/<int:pk>/migrate/check/", views.check, name="check"),
    path("hosts/<int:pk>/evacuate/", views.evacuate, name="evacuate"),
    path("hosts/<int:pk>/maintenance/", views.maintenance, name="maintenance"),
]

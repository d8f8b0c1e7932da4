from django.urls import path

from webvirt.hosts import views

app_name = "hosts"
urlpatterns = [
    path("", views.host_list, name="list"),
    path("add/", views.host_form, name="add"),
    path("<int:pk>/", views.host_detail, name="detail"),
    path("<int:pk>/summary/", views.host_summary, name="summary"),
    path("<int:pk>/edit/", views.host_form, name="edit"),
    path("<int:pk>/delete/", views.host_delete, name="delete"),
]

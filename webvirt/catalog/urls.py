from django.urls import path

from webvirt.catalog import views

app_name = "catalog"
urlpatterns = [
    path("", views.template_list, name="list"),
    path("register/", views.template_register, name="register"),
    path("quotas/", views.quota_list, name="quotas"),
    path("from-domain/<int:domain_pk>/", views.template_make, name="make"),
    path("<int:pk>/", views.template_detail, name="detail"),
    path("<int:pk>/edit/", views.template_edit, name="edit"),
    path("<int:pk>/delete/", views.template_delete, name="delete"),
]

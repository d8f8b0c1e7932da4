from django.urls import path

from webvirt.accounts import views

app_name = "accounts"
urlpatterns = [path("", views.audit_list, name="audit")]

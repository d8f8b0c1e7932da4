from django.urls import path

from webvirt.storage import views

app_name = "storage"
urlpatterns = [
    path("host/<int:host_pk>/", views.pool_list, name="list"),
    path("host/<int:host_pk>/new/", views.pool_create, name="create"),
    path("downloads/<int:job_pk>/", views.download_file, name="download_file"),
    path("volumes/<str:oid>/", views.volume_detail, name="volume"),
    path("volumes/<str:oid>/xml/download/", views.volume_xml_download, name="volume_xml_download"),
    path("volumes/<str:oid>/<str:verb>/", views.volume_action, name="volume_action"),
    path("pools/<str:oid>/", views.pool_detail, name="pool"),
    path("pools/<str:oid>/xml/", views.pool_xml, name="pool_xml"),
    path("pools/<str:oid>/xml/download/", views.pool_xml_download, name="pool_xml_download"),
    path("pools/<str:oid>/delete/", views.pool_delete, name="pool_delete"),
    path("pools/<str:oid>/volumes/", views.volume_create, name="volume_create"),
    path("pools/<str:oid>/upload/", views.volume_upload, name="volume_upload"),
    path("pools/<str:oid>/<str:verb>/", views.pool_action, name="pool_action"),
]

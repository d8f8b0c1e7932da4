from django.urls import path

from webvirt.domains import device_views, views

app_name = "domains"
urlpatterns = [
    path("", views.domain_list, name="list"),
    path("new/", views.domain_define, name="define"),
    path("bulk/", views.domain_bulk, name="bulk"),
    path("<int:pk>/", views.domain_detail, name="detail"),
    path("<int:pk>/summary/", views.domain_summary, name="summary"),
    path("<int:pk>/xml/", views.domain_xml, name="xml"),
    path("<int:pk>/xml/download/", views.domain_xml_download, name="xml_download"),
    path("<int:pk>/undefine/", views.domain_undefine, name="undefine"),
    path("<int:pk>/remove/", views.domain_remove, name="remove"),
    path("<int:pk>/extend/", views.domain_extend, name="extend"),
    path("<int:pk>/devices/", device_views.devices_panel, name="devices"),
    path("<int:pk>/devices/<str:op>/", device_views.device_change, name="device_change"),
    path("<int:pk>/<str:verb>/", views.domain_action, name="action"),
]

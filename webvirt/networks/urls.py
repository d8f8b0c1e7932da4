from django.urls import path

from webvirt.networks import views

app_name = "networks"
urlpatterns = [
    path("host/<int:host_pk>/", views.network_list, name="list"),
    path("host/<int:host_pk>/new/", views.network_create, name="create"),
    path("host/<int:host_pk>/interfaces/", views.interface_list, name="interfaces"),
    path("interfaces/<str:oid>/", views.interface_detail, name="interface"),
    path("interfaces/<str:oid>/<str:verb>/", views.interface_action, name="interface_action"),
    path("<str:oid>/", views.network_detail, name="detail"),
    path("<str:oid>/xml/", views.network_xml, name="xml"),
    path("<str:oid>/xml/download/", views.network_xml_download, name="xml_download"),
    path("<str:oid>/delete/", views.network_delete, name="delete"),
    path("<str:oid>/dhcp-hosts/", views.dhcp_host_add, name="dhcp_add"),
    path("<str:oid>/dhcp-hosts/remove/", views.dhcp_host_remove, name="dhcp_remove"),
    path("<str:oid>/<str:verb>/", views.network_action, name="action"),
]

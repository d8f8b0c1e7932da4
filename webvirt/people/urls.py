from django.urls import path

from webvirt.people import views

app_name = "people"
urlpatterns = [
    path("", views.people_list, name="list"),
    path("new/", views.user_create, name="create"),
    path("import/", views.people_import, name="import"),
    path("<int:pk>/", views.user_detail, name="detail"),
    path("<int:pk>/edit/", views.user_edit, name="edit"),
    path("<int:pk>/password/", views.user_password, name="password"),
    path("<int:pk>/deactivate/", views.user_deactivate, name="deactivate"),
    path("<int:pk>/reactivate/", views.user_reactivate, name="reactivate"),
    path("<int:pk>/tokens/<int:token_pk>/revoke/", views.token_revoke, name="token_revoke"),
    path("groups/new/", views.group_create, name="group_create"),
    path("groups/<int:pk>/", views.group_detail, name="group"),
    path("groups/<int:pk>/remove/", views.group_member_remove, name="group_remove"),
    path("groups/<int:pk>/delete/", views.group_delete, name="group_delete"),
]

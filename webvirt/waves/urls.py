from django.urls import path

from webvirt.waves import views

app_name = "waves"
urlpatterns = [
    path("", views.wave_list, name="list"),
    path("<int:pk>/cancel/", views.wave_cancel, name="cancel"),
    path("<int:pk>/end/", views.wave_end, name="end"),
]

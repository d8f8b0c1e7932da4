from django.urls import path

from webvirt.consoles import views

app_name = "consoles"
urlpatterns = [
    path("<int:pk>/vnc/", views.vnc_console, name="vnc"),
    path("<int:pk>/serial/", views.serial_console, name="serial"),
    path("<int:pk>/screenshot.png", views.screenshot, name="screenshot"),
]

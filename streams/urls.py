from django.urls import path

from . import views

app_name = "streams"
urlpatterns = [
    path("", views.index, name="index"),
    path("listen/<slug:slug>/", views.listen, name="listen"),
    path("status.json", views.status, name="status"),
]

from django.urls import path

from . import views, whep

app_name = "streams"
urlpatterns = [
    path("", views.index, name="index"),
    path("listen/<slug:slug>/", views.listen, name="listen"),
    path("status.json", views.status, name="status"),
    path("whep/<slug:slug>/", whep.endpoint, name="whep"),
    path("whep/<slug:slug>/<str:session_id>/", whep.session_resource, name="whep-session"),
]

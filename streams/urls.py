from django.urls import path

from . import oggstream, views, whep

app_name = "streams"
urlpatterns = [
    path("", views.index, name="index"),
    path("listen/<slug:slug>/", views.listen, name="listen"),
    path("status.json", views.status, name="status"),
    path("metrics", views.metrics, name="metrics"),
    path("stream/<slug:slug>.ogg", oggstream.ogg_stream, name="ogg-stream"),
    path("whep/<slug:slug>/", whep.endpoint, name="whep"),
    path("whep/<slug:slug>/<str:session_id>/", whep.session_resource, name="whep-session"),
]

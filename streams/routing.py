from django.urls import path, re_path

from .consumers import ListenConsumer, NoSuchSocket

websocket_urlpatterns = [
    path("ws/listen/<slug:slug>/", ListenConsumer.as_asgi()),
    re_path(r"", NoSuchSocket.as_asgi()),  # any other path: refused cleanly, not a 500 with a traceback
]

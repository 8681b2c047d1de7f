from django.urls import path

from .consumers import ListenConsumer

websocket_urlpatterns = [path("ws/listen/<slug:slug>/", ListenConsumer.as_asgi())]

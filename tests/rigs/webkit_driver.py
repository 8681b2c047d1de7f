"""One WebKitGTK page (Debian's libwebkit2gtk-4.1, through python3-gi), driven over stdin/stdout.

Run by the system python3 (the one Debian's gi bindings are built for) under an X server, by
tests/rigs/webkit.py. Requests and answers are JSON lines:

    {"id": 1, "op": "goto", "url": "http://127.0.0.1:8088/listen/default/"}  ->  {"id": 1, "value": null}
    {"id": 2, "op": "evaluate", "expression": "document.title"}              ->  {"id": 2, "value": "…"}
    {"id": 3, "op": "screenshot", "path": "/tmp/page.png"}                   ->  {"id": 3, "value": null}

An expression's promise is awaited; a failure answers {"id": …, "error": "…"}. The first line
out is {"id": 0, "value": {"version": "2.50.6"}} once the view exists. Closing
stdin ends the process.

WebRTC is switched on in the view's settings, as a browser would, so that the page meets what
this build of WebKit offers; autoplay is allowed (a page may start sound by itself).
"""
import json
import sys
import threading

import gi

gi.require_version("Gdk", "3.0")
gi.require_version("Gtk", "3.0")
gi.require_version("WebKit2", "4.1")
from gi.repository import Gdk, GLib, Gtk, WebKit2  # noqa: E402


def answer(request_id, value=None, error=None):
    message = {"id": request_id, "error": error} if error is not None else {"id": request_id, "value": value}
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class Driver:
    def __init__(self):
        policies = WebKit2.WebsitePolicies(autoplay=WebKit2.AutoplayPolicy.ALLOW)
        self.view = WebKit2.WebView(website_policies=policies)
        settings = self.view.get_settings()
        settings.set_enable_webrtc(True)
        settings.set_enable_media_stream(True)
        settings.set_media_playback_requires_user_gesture(False)
        self.window = Gtk.Window(default_width=1280, default_height=800)
        self.window.add(self.view)
        self.window.show_all()
        self.loading = None  # the id of the goto request waiting for its page
        self.view.connect("load-changed", self.load_changed)
        self.view.connect("load-failed", self.load_failed)

    def handle(self, line):
        request = json.loads(line)
        request_id = request["id"]
        try:
            if request["op"] == "goto":
                self.loading = request_id
                self.view.load_uri(request["url"])
            elif request["op"] == "screenshot":  # the window as the X server shows it
                window = self.window.get_window()
                pixbuf = Gdk.pixbuf_get_from_window(window, 0, 0, window.get_width(), window.get_height())
                pixbuf.savev(request["path"], "png", [], [])
                answer(request_id)
            elif request["op"] == "evaluate":
                body = f"return await ({request['expression']});"
                self.view.call_async_javascript_function(body, -1, None, None, None, None, self.evaluated, request_id)
            else:
                answer(request_id, error=f"unknown op {request['op']!r}")
        except Exception as error:  # noqa: BLE001 - any failure is the request's answer
            answer(request_id, error=repr(error))
        return False

    def evaluated(self, view, result, request_id):
        try:
            value = view.call_async_javascript_function_finish(result)
        except GLib.Error as error:
            answer(request_id, error=error.message)
            return
        text = value.to_json(0) if value is not None and not value.is_undefined() else None
        answer(request_id, json.loads(text) if text else None)

    def load_changed(self, view, event):
        if event == WebKit2.LoadEvent.FINISHED and self.loading is not None:
            request_id, self.loading = self.loading, None
            answer(request_id)

    def load_failed(self, view, event, uri, error):
        if self.loading is not None:
            request_id, self.loading = self.loading, None
            answer(request_id, error=f"loading {uri} failed: {error.message}")
        return True


def read_requests(driver):
    for line in sys.stdin:
        if line.strip():
            GLib.idle_add(driver.handle, line)
    GLib.idle_add(Gtk.main_quit)


def main():
    driver = Driver()
    threading.Thread(target=read_requests, args=(driver,), daemon=True).start()
    version = f"{WebKit2.get_major_version()}.{WebKit2.get_minor_version()}.{WebKit2.get_micro_version()}"
    answer(0, {"version": version})
    Gtk.main()


if __name__ == "__main__":
    main()

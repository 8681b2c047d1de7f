"""Django admin over real HTTP against a server process: log in, save a profile's change form.

A save made this way runs in the server, so its post_save signal reaches the server's live
listeners, as an operator's save in a browser does (the test client would save in the test
process, where no listener lives).
"""
import http.cookiejar
import itertools
import re
import urllib.parse
from html.parser import HTMLParser
import urllib.request

from django.forms.models import model_to_dict

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_operators = itertools.count()


class FormFields(HTMLParser):
    """The values a browser would submit from a page's forms, as the page stands."""

    def __init__(self):
        super().__init__()
        self.fields = {}
        self._select = self._textarea = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "button", "file"):
            if attrs.get("type") in ("checkbox", "radio") and "checked" not in attrs:
                return
            self.fields[name] = attrs.get("value") or ("on" if attrs.get("type") == "checkbox" else "")
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in attrs:
            self.fields[self._select] = attrs.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.fields[name] = ""

    def handle_data(self, data):
        if self._textarea:
            self.fields[self._textarea] += data

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def form_fields(page):
    parser = FormFields()
    parser.feed(page)
    return parser.fields


def operator(server):
    """A new superuser, logged in to `server`'s admin (needs the test database)."""
    from django.contrib.auth import get_user_model

    name = f"operator{next(_operators)}"
    get_user_model().objects.create_superuser(name, "", "operator-pw-1")
    return AdminOverHttp(server.url()).log_in(name, "operator-pw-1")


class AdminOverHttp:
    def __init__(self, base_url):
        self.base_url = base_url.rstrip("/")
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def _get(self, path):
        with self._opener.open(self.base_url + path, timeout=10) as response:
            return response.read().decode()

    def _post(self, path, fields):
        token = CSRF_FIELD.search(self._get(path)).group(1)
        data = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token}, doseq=True).encode()
        request = urllib.request.Request(self.base_url + path, data=data,
                                         headers={"Referer": self.base_url + path})
        with self._opener.open(request, timeout=10) as response:
            return response.geturl(), response.read().decode()

    def page(self, path):
        return self._get(path)

    def log_in(self, username, password):
        url, page = self._post("/admin/login/", {"username": username, "password": password, "next": "/admin/"})
        assert url.endswith("/admin/"), f"login failed: {page[:500]}"
        return self

    def save_form(self, path, **changes):
        """Submit the form on `path` as it stands with `changes`, as a person editing one field would."""
        fields = {**form_fields(self._get(path)), **changes, "_save": "Save"}
        fields.pop("csrfmiddlewaretoken", None)
        url, page = self._post(path, fields)
        assert not url.endswith(path), f"the admin refused the change: {re.findall(r'errorlist.*?</ul>', page)[:3]}"

    def save_profile(self, profile, **changes):
        """Post the profile's change form with `changes`; the admin must accept it."""
        form = {key: ("" if value is None else value) for key, value in model_to_dict(profile).items() if key != "id"}
        for key, value in list(form.items()):
            if isinstance(value, bool):  # an unchecked checkbox is left out of a form
                if value:
                    form[key] = "on"
                else:
                    del form[key]
        for key, value in changes.items():
            if value is False:
                form.pop(key, None)
            else:
                form[key] = "on" if value is True else value
        form["_save"] = "Save"
        path = f"/admin/streams/streamprofile/{profile.pk}/change/"
        url, page = self._post(path, form)
        assert not url.endswith(path), f"the admin refused the change: {re.findall(r'errorlist.*?</ul>', page)[:3]}"

"""The admin shows a profile's help texts as written (issue 15, item 5: "/listen//")."""
from html.parser import HTMLParser

import pytest

from tests.helpers import make_profile

pytestmark = pytest.mark.django_db


class ElementText(HTMLParser):
    """The text a browser shows inside the element with a given id (tags dropped, entities decoded)."""

    def __init__(self, element_id):
        super().__init__(convert_charrefs=True)
        self.element_id = element_id
        self.depth = 0  # how deep inside that element the parser is; 0: outside
        self.text = ""

    def handle_starttag(self, tag, attrs):
        if self.depth:
            self.depth += 1
        elif dict(attrs).get("id") == self.element_id:
            self.depth = 1

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.text += data


def shown_text(page, element_id):
    parser = ElementText(element_id)
    parser.feed(page)
    return " ".join(parser.text.split())


def test_the_admin_change_page_shows_the_slug_help_with_its_placeholder(admin_client):
    profile = make_profile("helped")
    page = admin_client.get(f"/admin/streams/streamprofile/{profile.pk}/change/").content.decode()
    assert shown_text(page, "id_slug_helptext") == "Used in the listener URL: /listen/<slug>/"

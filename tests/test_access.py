"""Who may listen: every access mode against anonymous, logged-in, right key and wrong key,
for both the page and the signaling socket."""
import asyncio

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from streams.models import StreamProfile
from streams.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

APP = URLRouter(websocket_urlpatterns)
KEY = "the-right-key-0123456789"
WHO = ["anonymous", "logged-in", "right key", "wrong key"]
ALLOWED = {
    "public": {"anonymous", "logged-in", "right key", "wrong key"},
    "login": {"logged-in"},
    "link": {"right key"},
}
CASES = [(mode, who) for mode in ALLOWED for who in WHO]


@pytest.fixture
def listener_user():
    return get_user_model().objects.create_user("listener", password="listener-pw-1")


def make(mode):
    return StreamProfile.objects.create(name=mode, slug=mode, access=mode, access_key=KEY)


def query(who):
    return {"right key": f"?key={KEY}", "wrong key": "?key=guess"}.get(who, "")


@pytest.mark.parametrize("mode, who", CASES)
def test_the_page(client, listener_user, mode, who):
    make(mode)
    if who == "logged-in":
        client.force_login(listener_user)
    response = client.get(f"/listen/{mode}/{query(who)}")
    assert response.status_code == (200 if who in ALLOWED[mode] else 403)
    if who not in ALLOWED[mode]:
        assert "Not allowed" in response.content.decode()


@pytest.mark.parametrize("mode, who", CASES)
def test_the_socket(listener_user, mode, who):
    make(mode)
    user = listener_user if who == "logged-in" else AnonymousUser()

    async def scenario():
        communicator = WebsocketCommunicator(APP, f"/ws/listen/{mode}/{query(who)}")
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        assert connected
        if await communicator.receive_nothing(timeout=0.3):
            await communicator.disconnect()
            return "allowed", None
        error = await communicator.receive_json_from()
        return error, await communicator.receive_output()

    outcome, closed = asyncio.run(scenario())
    if who in ALLOWED[mode]:
        assert outcome == "allowed"
    else:
        assert outcome["code"] == "forbidden" and outcome["message"]
        assert closed == {"type": "websocket.close", "code": 4403}


def test_the_page_passes_its_key_on_to_the_socket(client):
    make("link")
    page = client.get(f"/listen/link/?key={KEY}").content.decode()
    assert f'"wsPath": "/ws/listen/link/?key={KEY}"' in page


def test_rotating_the_key_revokes_old_links(client, admin_client):
    profile = make("link")
    admin_client.post("/admin/streams/streamprofile/", {"action": "rotate_access_keys", "_selected_action": [profile.pk]})
    profile.refresh_from_db()
    assert profile.access_key != KEY and len(profile.access_key) >= 20
    assert client.get(f"/listen/link/?key={KEY}").status_code == 403
    assert client.get(f"/listen/link/?key={profile.access_key}").status_code == 200


def test_admin_shows_the_share_link_and_a_qr_code(admin_client):
    profile = make("link")
    page = admin_client.get(f"/admin/streams/streamprofile/{profile.pk}/change/").content.decode()
    assert f"http://testserver/listen/link/?key={KEY}" in page
    assert '<svg' in page and 'class="segno"' in page


def test_each_new_profile_gets_its_own_key():
    keys = {StreamProfile.objects.create(name=f"p{i}", slug=f"p{i}").access_key for i in range(5)}
    assert len(keys) == 5

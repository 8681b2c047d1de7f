"""Who may listen: every access mode against anonymous, logged-in, right key and wrong key,
for both the page and the signaling socket."""
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from streams.models import StreamProfile, not_found_message
from tests.helpers import run
from tests.rigs.communicator import connected, offer

pytestmark = pytest.mark.django_db(transaction=True)

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
    if who in ALLOWED[mode]:
        assert response.status_code == 200
    else:  # exactly what an unknown stream answers: nothing says this one exists
        unknown = client.get(f"/listen/no-such-{mode}/{query(who)}")
        assert response.status_code == unknown.status_code == 404
        same = [page.content.decode().replace(f"“{slug}”", "“X”") for page, slug in ((response, mode), (unknown, f"no-such-{mode}"))]
        assert same[0] == same[1]


@pytest.mark.parametrize("mode, who", CASES)
def test_the_socket_answers_an_offer_only_for_whom_the_mode_allows(listener_user, mode, who):
    make(mode)
    user = listener_user if who == "logged-in" else AnonymousUser()

    async def scenario():
        communicator = await connected(mode, query=query(who), user=user)
        reply = await offer(communicator)
        closed = None if reply["type"] == "answer" else await communicator.receive_output()
        await communicator.disconnect()
        return reply, closed

    reply, closed = run(scenario())
    if who in ALLOWED[mode]:  # allowed: the offer is answered, with the stream's audio
        assert reply["type"] == "answer" and "m=audio" in reply["sdp"], reply
    else:  # as for an unknown stream
        assert reply == {"type": "error", "code": "profile-not-found", "message": not_found_message(mode)}
        assert closed == {"type": "websocket.close", "code": 4404}


def test_the_page_passes_its_key_on_to_the_socket(client):
    make("link")
    page = client.get(f"/listen/link/?key={KEY}").content.decode()
    assert f'"wsPath": "/ws/listen/link/?key={KEY}"' in page


def test_rotating_the_key_revokes_old_links(client, admin_client):
    profile = make("link")
    admin_client.post("/admin/streams/streamprofile/", {"action": "rotate_access_keys", "_selected_action": [profile.pk]})
    profile.refresh_from_db()
    assert profile.access_key != KEY and len(profile.access_key) >= 20
    assert client.get(f"/listen/link/?key={KEY}").status_code == 404
    assert client.get(f"/listen/link/?key={profile.access_key}").status_code == 200


def test_admin_shows_the_share_link_and_a_qr_code(admin_client):
    profile = make("link")
    page = admin_client.get(f"/admin/streams/streamprofile/{profile.pk}/change/").content.decode()
    assert f"http://testserver/listen/link/?key={KEY}" in page
    assert '<svg' in page and 'class="segno"' in page


def test_each_new_profile_gets_its_own_key():
    keys = {StreamProfile.objects.create(name=f"p{i}", slug=f"p{i}").access_key for i in range(5)}
    assert len(keys) == 5


def test_the_index_lists_only_what_the_visitor_may_hear(client, listener_user):
    for mode in ALLOWED:
        make(mode)
    StreamProfile.objects.create(name="Off", slug="off", enabled=False)

    def listed():
        page = client.get("/").content.decode()
        return {slug for slug in ["public", "login", "link", "off"] if f"/listen/{slug}/" in page}

    assert listed() == {"public"}
    client.force_login(listener_user)
    assert listed() == {"public", "login"}


def test_a_switched_off_stream_is_not_named(client):
    StreamProfile.objects.create(name="The Secret Gala", slug="gala", enabled=False)
    page = client.get("/listen/gala/").content.decode()
    assert "Secret Gala" not in page and "gala" in page


def test_a_page_carrying_its_key_is_not_cached(client):
    make("link")
    assert client.get(f"/listen/link/?key={KEY}")["Cache-Control"] == "no-store"

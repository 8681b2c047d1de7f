"""The pages: Django's test client for the HTML, a real Chromium for listening."""
import pytest
from django.contrib.auth import get_user_model
from django.forms.models import model_to_dict

from streams.models import StreamProfile
from tests.rigs.chromium import chromium_page, peak_frequency
from tests.waiting import wait_for


@pytest.fixture
def tone(db):
    return StreamProfile.objects.create(name="Tone", slug="tone", description="A test tone")


def test_index_lists_enabled_profiles_only(client, tone):
    StreamProfile.objects.create(name="Hidden", slug="hidden", enabled=False)
    page = client.get("/").content.decode()
    assert 'href="/listen/tone/"' in page and "A test tone" in page
    assert "Hidden" not in page


@pytest.mark.parametrize("slug, message", [("nope", "There is no stream called “nope”"), ("hidden", "There is no stream called “hidden”")])
def test_listen_page_of_an_unknown_or_disabled_profile_is_a_404_that_says_so(client, tone, slug, message, settings):
    settings.DEBUG = False
    StreamProfile.objects.create(name="Hidden", slug="hidden", enabled=False)
    response = client.get(f"/listen/{slug}/")
    assert response.status_code == 404
    assert message in response.content.decode()


def test_listen_page_has_a_listen_button_status_player_and_latency_choice(client, tone):
    page = client.get("/listen/tone/").content.decode()
    for part in ['id="listen"', 'id="status"', '<audio id="player"', '<select id="latency"',
                 '"wsPath": "/ws/listen/tone/"', "page.js"]:
        assert part in page


def test_admin_lists_profiles_with_a_listen_link(admin_client, tone):
    page = admin_client.get("/admin/streams/streamprofile/?q=Tone").content.decode()
    assert 'href="/listen/tone/"' in page and "Listen" in page


def change_in_admin(client, profile, **changes):
    form = {key: ("" if value is None else value) for key, value in model_to_dict(profile).items() if key != "id"}
    form.update(changes)
    response = client.post(f"/admin/streams/streamprofile/{profile.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]


def test_admin_refuses_stereo_g711_with_the_reason(admin_client, tone):
    form = {key: ("" if value is None else value) for key, value in model_to_dict(tone).items() if key != "id"}
    form.update(codec="pcmu", audio_bitrate=64000)
    page = admin_client.post(f"/admin/streams/streamprofile/{tone.pk}/change/", form).content.decode()
    assert "mono only" in page


def listen_in_chromium(page, server, slug, expected_hz):
    page.goto(server.url(f"/listen/{slug}/"))  # it connects and, in the rig's Chromium, plays by itself
    wait_for(lambda: page.get_attribute("#status", "data-state") == "connected", 20, "the page to connect")

    def hears_tone():
        peak = peak_frequency(page)
        return peak and abs(peak["frequency"] - expected_hz) <= 5 and peak["level"] > -60

    wait_for(hears_tone, 15, f"Chromium to hear {expected_hz} Hz")


@pytest.fixture
def orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an asyncio loop running in this thread; the ORM calls made
    # between page steps are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.mark.django_db(transaction=True)
def test_a_person_hears_440_then_1000_hz_after_changing_it_in_admin(server, client, orm_beside_playwright):
    profile = StreamProfile.objects.create(name="Default", slug="default")
    admin = get_user_model().objects.create_superuser("admin", "", "pw-for-tests")
    client.force_login(admin)
    with chromium_page() as page:
        listen_in_chromium(page, server, "default", 440)
        change_in_admin(client, profile, sine_frequency=1000)
        listen_in_chromium(page, server, "default", 1000)


def test_pages_carry_a_content_security_policy_without_inline_scripts(client, tone, admin_client):
    for response in (client.get("/"), client.get("/listen/tone/"), admin_client.get("/admin/")):
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
        assert "frame-ancestors 'none'" in policy

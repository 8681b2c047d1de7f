import pytest
from django.conf import settings

from streams.webrtc.ice import restrict_host_addresses

# Tests and benchmarks send traffic to loopback addresses only.
TEST_ICE_ADDRESSES = ["127.0.0.1"]


@pytest.fixture(autouse=True, scope="session")
def ice_on_loopback_only():
    settings.RTC_ICE_ADDRESSES = TEST_ICE_ADDRESSES
    restrict_host_addresses(TEST_ICE_ADDRESSES)


@pytest.fixture(scope="session")
def server(django_db_setup, django_db_blocker, tmp_path_factory):
    """One daphne for the session, reading the test database; tests create profiles with transactional_db."""
    from tests.rigs.daphne import DaphneServer

    db_path = settings.DATABASES["default"]["NAME"]
    daphne = DaphneServer(db_path, tmp_path_factory.mktemp("daphne") / "app.log").start()
    yield daphne
    daphne.stop()


MONITOR = "PulseAudio: virt.monitor"  # the loopback of the rig's null sink "virt"


@pytest.fixture(scope="module")
def pulse():
    """A private headless PulseAudio with a null sink "virt" (see tests/rigs/pulseaudio.py)."""
    from tests.rigs.pulseaudio import PulseAudioRig

    with PulseAudioRig() as rig:
        yield rig


@pytest.fixture
def tone(pulse):
    """Start a tone into the rig's null sink: `tone(hz)`; stops the previous one."""
    players = []

    def play(hz):
        for player in players:
            player.terminate()
        players.append(pulse.play_tone(hz, seconds=60))

    yield play
    for player in players:
        player.terminate()


@pytest.fixture(scope="module")
def capture_server(pulse, django_db_setup, tmp_path_factory):
    """A daphne that reaches the rig's PulseAudio; device captures linger 1 s."""
    from tests.rigs.daphne import DaphneServer

    env = {**pulse.env, "RTC_CAPTURE_LINGER_SECONDS": "1"}
    log = tmp_path_factory.mktemp("capture-daphne") / "app.log"
    daphne = DaphneServer(settings.DATABASES["default"]["NAME"], log, extra_env=env).start()
    yield daphne
    daphne.stop()


@pytest.fixture
def own_server(django_db_setup, tmp_path):
    """Start daphne servers of a test's own, `own_server(extra_env)`; stopped after the test.
    For tests that save through admin (a long-lived server's content-type cache goes stale when
    the test database is flushed) or that need other settings."""
    from tests.rigs.daphne import DaphneServer

    started = []

    def start(extra_env=None):
        log = tmp_path / f"daphne-{len(started)}.log"
        started.append(DaphneServer(settings.DATABASES["default"]["NAME"], log, extra_env=extra_env).start())
        return started[-1]

    yield start
    for daphne in started:
        daphne.stop()


RELEASE_BUILD = pytest.StashKey()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Tests that time sound against the wall clock or a browser's playout (marked `times_sound`)
    run last in a plain pytest run. ./test.sh runs them first, on their own, before the rest run
    two at a time."""
    items.sort(key=lambda item: item.get_closest_marker("times_sound") is not None)


def pytest_collection_finish(session):
    """With release tests to run, start the release build now, in the background at the lowest
    CPU priority (tests/rigs/release.py): it is ready by the time they come."""
    if any(item.path.name == "test_release.py" for item in session.items):
        from tests.rigs.release import ReleaseBuild

        session.config.stash[RELEASE_BUILD] = ReleaseBuild().start(niceness=19)


def pytest_sessionfinish(session):
    build = session.config.stash.get(RELEASE_BUILD, None)
    if build is not None:
        build.stop()


@pytest.fixture(scope="session")
def release_build(request, tmp_path_factory):
    """The release built in the background since collection (see pytest_collection_finish)."""
    return request.config.stash[RELEASE_BUILD].wait(unpack_into=tmp_path_factory.mktemp("unpacked"))

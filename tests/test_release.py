"""The standalone release: built once per run by scripts/release.py for real, unpacked into an
empty folder and run with a bare environment (see tests/rigs/release.py)."""
import asyncio
import json
import re
import subprocess
import urllib.request

import pytest

from tests.conftest import MONITOR
from tests.helpers import run
from tests.listener import Listener, dominant_frequency
from tests.rigs.admin_http import AdminOverHttp
from tests.rigs.release import PROJECT, ReleaseServer, bare_environment

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def release(release_build):
    return release_build


def git(*args):
    return subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True).stdout.strip()


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()


def rtc_caster(release, *arguments, stdin=None, **env):
    """The executable's management command, as a user runs it beside a running server."""
    result = subprocess.run([str(release.executable), *arguments], env=bare_environment(**env), input=stdin,
                            capture_output=True, text=True, timeout=60, cwd=release.unpack_into)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


async def hear_and_count(server, release, slug, seconds=2.0):
    """Listen to `slug`, and meanwhile ask `rtc-caster stats` how many listen."""
    listener = Listener(server.ws_url(slug))
    try:
        await listener.connect()
        stats = await asyncio.to_thread(rtc_caster, release, "stats", "--json", "--port", str(server.port))
        return await listener.listen_for(seconds), json.loads(stats)
    finally:
        await listener.close()


def test_the_zip_is_named_for_platform_ref_and_commit_and_holds_one_folder(release):
    branch = git("rev-parse", "--abbrev-ref", "HEAD")  # "HEAD" when detached: the zip says "detached"
    ref = git("describe", "--tags", "--exact-match", "HEAD") or ("detached" if branch == "HEAD" else branch)
    assert release.zip_path.name == f"rtc-caster-linux-{ref}-{git('rev-parse', '--short', 'HEAD')}.zip"
    assert release.zip_path.parent == PROJECT / "dist"
    assert [p.name for p in release.unpack_into.iterdir()] == ["rtc-caster"]
    assert release.zip_path.stat().st_size <= 150e6
    names = {p.name for p in release.folder.iterdir()}
    assert {"rtc-caster", "README.md", "LICENSES", "_internal"} <= names
    index = (release.folder / "LICENSES" / "INDEX.txt").read_text()
    for bundled in ("Django", "daphne", "aiortc", "av", "numpy", "PyAudio", "pyinstaller", "Python", "libopus0"):
        assert bundled in index, f"no licence notice for {bundled}"


def test_first_start_serves_the_tone_and_the_admin_from_a_bare_environment(release, tmp_path):
    server = ReleaseServer(release, tmp_path / "first.out").start()
    try:
        assert server.seconds_to_serve < 5, f"serving after {server.seconds_to_serve:.1f} s"
        assert server.printed_password(), server.log()
        assert f"open http://127.0.0.1:{server.port}/" in server.log()
        data = release.folder / "data"
        assert {"db.sqlite3", ".secret_key", "app.log"} <= {p.name for p in data.iterdir()}

        heard, stats = run(hear_and_count(server, release, "default"))
        assert stats["default"]["listeners"] == 1, stats
        samples = heard.samples()[int(0.2 * heard.sample_rate):]
        for channel in range(2):
            assert abs(dominant_frequency(samples[:, channel], heard.sample_rate) - 440) <= 5

        status, _, page = get(server.url("/admin/login/"))
        stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+\.css)"', page)
        assert status == 200 and stylesheets
        for stylesheet in stylesheets:
            status, content_type, css = get(server.url(stylesheet))
            assert status == 200 and content_type.startswith("text/css") and len(css) > 100, stylesheet
        status, content_type, _ = get(server.url("/static/streams/page.js"))
        assert status == 200 and "javascript" in content_type

        # Everything it runs comes from the unpacked folder (and the system's C library etc.),
        # libopus included: nothing from the checkout or its virtualenv.
        loaded = server.loaded_files()
        assert not [path for path in loaded if path.startswith(str(PROJECT))], loaded
        assert any(path.startswith(str(release.folder)) and "libopus" in path for path in loaded), loaded
    finally:
        server.stop()


def test_a_second_start_keeps_the_data_and_prints_no_new_password(release, tmp_path):
    first = ReleaseServer(release, tmp_path / "first.out", {"RTC_DATA_DIR": str(tmp_path / "data")}).start()
    try:
        password = first.printed_password()
        admin = AdminOverHttp(first.url()).log_in("admin", password)
        admin.save_form("/admin/streams/streamprofile/1/change/", name="Front of house")
    finally:
        first.stop()
    second = ReleaseServer(release, tmp_path / "second.out", {"RTC_DATA_DIR": str(tmp_path / "data")}).start()
    try:
        assert second.printed_password() is None, second.log()
        assert "Admin user 'admin' exists" in second.log()
        assert "Front of house" in get(second.url("/"))[2]
        AdminOverHttp(second.url()).log_in("admin", password)
        rtc_caster(release, "changepassword", "admin", stdin="Another-pass-42\nAnother-pass-42\n",
                   RTC_DATA_DIR=str(tmp_path / "data"))
        AdminOverHttp(second.url()).log_in("admin", "Another-pass-42")
    finally:
        second.stop()


def test_list_devices_json_lists_the_pulseaudio_monitor(release, pulse):
    env = bare_environment(**pulse.env)
    result = subprocess.run([str(release.executable), "list_devices", "--json"], env=env, capture_output=True,
                            text=True, timeout=60, cwd=release.unpack_into)
    assert result.returncode == 0, result.stderr[-2000:]
    names = [device["name"] for device in json.loads(result.stdout)["devices"]]
    assert MONITOR in names

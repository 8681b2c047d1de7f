"""What differs per platform in the release (scripts/releaseplatform.py), for all three platforms.

Only the Linux build is built and run here (tests/test_release.py); Windows and macOS are
checked as far as they can be without their systems: names, paths, where libopus comes from,
and that the bundled capture module is the one the app imports there (Windows: the fake
pyaudiowpatch of tests/fake_pyaudiowpatch.py, since WASAPI cannot exist here)."""
import sys

import pytest
from packaging.requirements import Requirement

from rtccaster_site import executable, paths
from scripts.releaseplatform import find_opus_library, library_in_ldconfig, platform_for, zip_name
from streams.audio import devices
from tests import fake_pyaudiowpatch

LDCONFIG = """\
1234 libs found in cache `/etc/ld.so.cache'
\tlibopusfile.so.0 (libc6,x86-64) => /lib/x86_64-linux-gnu/libopusfile.so.0
\tlibopus.so.0 (libc6) => /lib/i386-linux-gnu/libopus.so.0
\tlibopus.so.0 (libc6,x86-64) => /lib/x86_64-linux-gnu/libopus.so.0
"""


@pytest.mark.parametrize("sys_platform, name, executable_name", [
    ("win32", "windows", "rtc-caster.exe"), ("linux", "linux", "rtc-caster"), ("darwin", "darwin", "rtc-caster"),
])
def test_each_platform_names_its_zip_and_executable(sys_platform, name, executable_name):
    platform = platform_for(sys_platform)
    assert platform.executable == executable_name
    assert zip_name(platform, "", "main", "a1b2c3d") == f"rtc-caster-{name}-main-a1b2c3d.zip"


def test_a_tag_on_head_names_the_zip_before_the_branch():
    assert zip_name(platform_for("linux"), "v1.2.0", "main", "a1b2c3d") == "rtc-caster-linux-v1.2.0-a1b2c3d.zip"


def test_a_branch_with_a_slash_or_no_branch_still_makes_a_file_name():
    linux = platform_for("linux")
    assert zip_name(linux, "", "feature/ogg stream", "a1b2c3d") == "rtc-caster-linux-feature-ogg-stream-a1b2c3d.zip"
    assert zip_name(linux, "", "", "a1b2c3d") == "rtc-caster-linux-detached-a1b2c3d.zip"


def test_an_unknown_platform_is_refused_by_name():
    with pytest.raises(SystemExit, match="freebsd"):
        platform_for("freebsd14")


def test_linux_takes_libopus_for_this_architecture_from_the_linker_cache():
    assert library_in_ldconfig(LDCONFIG, "libopus.so.0") == "/lib/x86_64-linux-gnu/libopus.so.0"
    assert find_opus_library(platform_for("linux"), {}, LDCONFIG) == "/lib/x86_64-linux-gnu/libopus.so.0"


def test_windows_and_macos_ask_ctypes_for_libopus_and_say_where_to_get_it():
    found = {"opus": r"C:\vcpkg\installed\x64-windows\bin\opus.dll"}
    assert find_opus_library(platform_for("win32"), {}, find_library=found.get) == found["opus"]
    with pytest.raises(SystemExit, match="vcpkg install opus"):
        find_opus_library(platform_for("win32"), {}, find_library=lambda name: None)
    with pytest.raises(SystemExit, match="brew install opus"):
        find_opus_library(platform_for("darwin"), {}, find_library=lambda name: None)


def test_rtc_opus_library_overrides_every_lookup():
    chosen = {"RTC_OPUS_LIBRARY": "/opt/opus/libopus.so.0"}
    assert find_opus_library(platform_for("linux"), chosen, "") == "/opt/opus/libopus.so.0"


@pytest.mark.parametrize("sys_platform", ["win32", "linux", "darwin"])
def test_requirements_install_the_capture_module_each_platform_bundles(sys_platform):
    platform = platform_for(sys_platform)
    installed = set()
    for line in open("requirements.txt"):
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"sys_platform": sys_platform}):
                installed.add(requirement.name.lower())
    assert {"pyaudiowpatch": "pyaudiowpatch", "pyaudio": "pyaudio"}[platform.capture_module] in installed


def test_on_windows_the_app_captures_through_the_module_the_release_bundles(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, platform_for("win32").capture_module, fake_pyaudiowpatch)
    assert devices.pyaudio_module() is fake_pyaudiowpatch


def test_the_release_keeps_its_data_beside_the_executable_or_in_rtc_data_dir(tmp_path):
    program = tmp_path / "rtc-caster" / "rtc-caster"
    assert paths.data_dir({}, frozen=True, executable=program) == tmp_path / "rtc-caster" / "data"
    assert (tmp_path / "rtc-caster" / "data").is_dir()
    chosen = tmp_path / "elsewhere"
    assert paths.data_dir({"RTC_DATA_DIR": str(chosen)}, frozen=True, executable=program) == chosen
    assert paths.data_dir({}, frozen=False) == paths.CHECKOUT
    assert paths.command_line(frozen=True) == "rtc-caster"


def test_the_executable_serves_without_arguments_and_prepares_the_database_except_to_list_devices():
    assert executable.command_line([]) == ["serve"]
    assert executable.command_line(["serve", "--port", "9000"]) == ["serve", "--port", "9000"]
    assert executable.needs_database(["serve"]) and executable.needs_database(["changepassword", "admin"])
    assert not executable.needs_database(["list_devices", "--json"])

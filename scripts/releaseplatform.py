"""What differs per platform in a release build, and nothing else (scripts/release.py does the rest).

Pure functions over plain values, so that the Windows and macOS answers are unit-tested on
Linux (tests/test_release_platform.py), although only the Linux build is built and run here.
"""
import re
from dataclasses import dataclass

APP = "rtc-caster"


@dataclass(frozen=True)
class ReleasePlatform:
    name: str                # in the zip's name: windows, linux or darwin
    executable: str          # the program's file name inside the rtc-caster/ folder
    venv_python: str         # the project virtualenv's interpreter, relative to the checkout
    capture_module: str      # the PortAudio binding requirements.txt installs there
    opus_library: str        # libopus's file name, as bundled and as looked up at run time
    opus_source: str         # where the build takes libopus from, for the README and errors
    sets_up_with_script: bool  # scripts/setup.sh (bash) installs the build's packages


PLATFORMS = {
    "linux": ReleasePlatform(
        name="linux", executable=APP, venv_python=".venv/bin/python", capture_module="pyaudio",
        opus_library="libopus.so.0", opus_source="the system's libopus0 package (ldconfig)",
        sets_up_with_script=True,
    ),
    "darwin": ReleasePlatform(
        name="darwin", executable=APP, venv_python=".venv/bin/python", capture_module="pyaudio",
        opus_library="libopus.0.dylib", opus_source="Homebrew's opus (brew install opus portaudio)",
        sets_up_with_script=True,
    ),
    "windows": ReleasePlatform(
        name="windows", executable=f"{APP}.exe", venv_python=".venv/Scripts/python.exe",
        capture_module="pyaudiowpatch", opus_library="opus.dll",
        opus_source="an opus.dll on PATH or named by RTC_OPUS_LIBRARY (e.g. vcpkg install opus:x64-windows)",
        sets_up_with_script=False,
    ),
}


def platform_for(sys_platform):
    """The release platform for a value of sys.platform."""
    if sys_platform == "win32":
        return PLATFORMS["windows"]
    if sys_platform == "darwin":
        return PLATFORMS["darwin"]
    if sys_platform.startswith("linux"):
        return PLATFORMS["linux"]
    raise SystemExit(f"No release build for {sys_platform!r}: windows, linux and darwin are supported.")


def zip_name(platform, tag, branch, short_hash):
    """rtc-caster-<platform>-<tag or branch>-<short hash>.zip: the tag when HEAD has one."""
    ref = tag or branch or "detached"
    ref = re.sub(r"[^A-Za-z0-9._-]+", "-", ref).strip("-") or "detached"
    return f"{APP}-{platform.name}-{ref}-{short_hash}.zip"


def find_opus_library(platform, environ, ldconfig_output="", find_library=lambda name: None):
    """The libopus file to bundle, or a SystemExit saying where to get one.

    RTC_OPUS_LIBRARY wins everywhere. Linux reads the linker cache (`ldconfig -p`), which
    names files; macOS and Windows ask ctypes, which gives a path there.
    """
    chosen = (environ.get("RTC_OPUS_LIBRARY") or "").strip()
    if chosen:
        return chosen
    if platform.name == "linux":
        found = library_in_ldconfig(ldconfig_output, platform.opus_library)
    else:
        found = find_library("opus")
    if not found:
        raise SystemExit(f"libopus not found: the release bundles it from {platform.opus_source}.")
    return found


def library_in_ldconfig(ldconfig_output, soname, machine="x86-64"):
    """The path `ldconfig -p` gives for a soname, preferring this machine's architecture."""
    candidates = []
    for line in ldconfig_output.splitlines():
        match = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if match and match.group(1) == soname:
            candidates.append((machine not in match.group(2), match.group(3)))
    return min(candidates)[1] if candidates else None


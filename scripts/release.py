#!/usr/bin/env python3
"""Build the standalone release: dist/rtc-caster-<platform>-<tag or branch>-<hash>.zip.

    python3 scripts/release.py        (from the repository root; prints the zip's path last)

It sets up what it needs as the README's commands do: the project's virtualenv with the
pinned build tools of requirements-release.txt (on Linux and macOS through scripts/setup.sh),
then runs itself again inside that virtualenv to collect the static files, freeze the app
with PyInstaller, add the README and the licence notices, and zip the `rtc-caster/` folder.
What differs per platform is in scripts/releaseplatform.py.
"""
import ctypes.util
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.releaseplatform import find_opus_library, platform_for, zip_name  # noqa: E402

BUILD = ROOT / "build" / "release"
DIST = ROOT / "dist"
IN_VENV_FLAG = "--in-venv"


def say(message):
    print(f"[release] {message}", flush=True)


def run(command, **kwargs):
    subprocess.run(command, check=True, cwd=ROOT, **kwargs)


def git(*args):
    result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def set_up_build_environment(platform):
    """The virtualenv with requirements-release.txt, as the README's commands make it."""
    if platform.sets_up_with_script:
        run(["bash", "scripts/setup.sh", "--release"])
        return
    venv_python = ROOT / platform.venv_python
    if not venv_python.exists():
        run([sys.executable, "-m", "venv", ".venv"])
    run([str(venv_python), "-m", "pip", "install", "-q", "-r", "requirements-release.txt"])


def collect_static_files(platform):
    say("collecting static files")
    run([str(ROOT / platform.venv_python), "manage.py", "collectstatic", "--noinput", "--clear", "-v", "0"])


def freeze(platform):
    ldconfig = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout if platform.name == "linux" else ""
    opus = find_opus_library(platform, os.environ, ldconfig, ctypes.util.find_library)
    say(f"freezing with PyInstaller (libopus from {opus})")
    env = {**os.environ, "RELEASE_OPUS_LIBRARY": opus, "RELEASE_CAPTURE_MODULE": platform.capture_module}
    run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
         "--distpath", str(BUILD / "dist"), "--workpath", str(BUILD / "work"),
         str(ROOT / "scripts" / "pyinstaller" / "rtc-caster.spec")], env=env)
    return BUILD / "dist" / "rtc-caster"


def add_documents(folder, platform):
    from scripts import licences  # needs the virtualenv's packaging library

    shutil.copy2(ROOT / "README.md", folder / "README.md")
    count = licences.write_notices(folder / "LICENSES", folder / "_internal", platform.name)
    say(f"licence notices: {count} files in LICENSES/")


def make_zip(folder, name):
    """Zip the folder as rtc-caster/…, keeping executable bits and symbolic links (unzip restores both)."""
    DIST.mkdir(exist_ok=True)
    target = DIST / name
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_dir() and not path.is_symlink():
                continue
            info = zipfile.ZipInfo.from_file(path, Path("rtc-caster") / path.relative_to(folder))
            info.compress_type = zipfile.ZIP_DEFLATED
            if path.is_symlink():
                # PyInstaller links libraries it keeps in a package's folder into _internal/.
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                archive.writestr(info, os.readlink(path))
                continue
            info.external_attr = (stat.S_IFREG | (path.stat().st_mode & 0o777)) << 16
            with open(path, "rb") as source, archive.open(info, "w") as entry:
                shutil.copyfileobj(source, entry, 1 << 20)
    return target


def build_in_venv(platform):
    collect_static_files(platform)
    folder = freeze(platform)
    add_documents(folder, platform)
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    name = zip_name(platform, git("describe", "--tags", "--exact-match", "HEAD"),
                    "" if branch == "HEAD" else branch, git("rev-parse", "--short", "HEAD"))
    say("zipping")
    target = make_zip(folder, name)
    say(f"{target.stat().st_size / 1e6:.1f} MB")
    print(target)


def main():
    platform = platform_for(sys.platform)
    if IN_VENV_FLAG in sys.argv:
        build_in_venv(platform)
        return
    set_up_build_environment(platform)
    # The build itself runs in the virtualenv, where Django, the app's packages and PyInstaller are.
    sys.exit(subprocess.run([str(ROOT / platform.venv_python), __file__, IN_VENV_FLAG], cwd=ROOT).returncode)


if __name__ == "__main__":
    main()

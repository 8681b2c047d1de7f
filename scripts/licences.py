"""The licence notices a release must carry for what it bundles (used by scripts/release.py).

Three sources: the Python distributions requirements.txt pulls in (their own licence files,
PyInstaller's too, for its bootloader), Python itself, and on Debian-like systems the
copyright file of each system package a bundled shared library came from.
"""
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
LICENCE_FILE = re.compile(r"(LICEN[CS]E|COPYING|NOTICE|COPYRIGHT|AUTHORS)", re.IGNORECASE)
# Bundled as well, though not asked for by requirements.txt: PyInstaller's bootloader.
ALSO_BUNDLED = ("pyinstaller",)


def requirement_names(requirements_text):
    """Distribution names a requirements file asks for on this platform (no -r includes)."""
    names = []
    for line in requirements_text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            names.append(requirement.name)
    return names


def runtime_distributions(names):
    """The named distributions and everything they require, as installed here."""
    seen, queue = {}, list(names)
    while queue:
        name = queue.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional extra not installed: not bundled either
        seen[key] = dist
        for line in dist.requires or ():
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                queue.append(requirement.name)
    return [seen[key] for key in sorted(seen)]


def write_notices(target, bundle, platform_name):
    """Write the notices under target/; returns how many files were written."""
    target.mkdir(parents=True, exist_ok=True)
    written = 0
    names = requirement_names((ROOT / "requirements.txt").read_text()) + list(ALSO_BUNDLED)
    index = ["What this release bundles, with the licence each declares. The files beside this one",
             "are the notices as their authors ship them.", ""]
    for dist in runtime_distributions(names):
        name, version = dist.metadata["Name"], dist.version
        declared = dist.metadata.get("License-Expression") or dist.metadata.get("License") or ""
        index.append(f"{name} {version}: {declared.splitlines()[0] if declared else 'see its files'}")
        for file in dist.files or ():
            if LICENCE_FILE.search(file.name) and not file.name.endswith((".py", ".pyc")):
                folder = target / f"{name}-{version}"
                folder.mkdir(exist_ok=True)
                (folder / file.name).write_bytes(Path(file.locate()).read_bytes())
                written += 1
    python_licence = Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "LICENSE.txt"
    if python_licence.exists():
        (target / "Python-LICENSE.txt").write_bytes(python_licence.read_bytes())
        index.append(f"Python {sys.version.split()[0]}: PSF-2.0")
        written += 1
    if platform_name == "linux":
        written += write_system_library_notices(target, bundle, index)
    (target / "INDEX.txt").write_text("\n".join(index) + "\n")
    return written + 1


def write_system_library_notices(target, bundle, index):
    """Debian's copyright file for each system package a bundled .so came from."""
    packages = set()
    for library in bundle.glob("*.so*"):
        result = subprocess.run(["dpkg", "-S", f"*/{library.name}"], capture_output=True, text=True)
        for line in result.stdout.splitlines():
            package = line.split(":", 1)[0]
            packages.add(package)
    written = 0
    for package in sorted(packages):
        copyright_file = Path("/usr/share/doc") / package / "copyright"
        if copyright_file.exists():
            (target / f"debian-{package}-copyright.txt").write_bytes(copyright_file.read_bytes())
            index.append(f"{package} (system library, Debian package): see debian-{package}-copyright.txt")
            written += 1
    return written

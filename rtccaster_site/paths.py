"""Where RTC Caster's code and its data live: a git checkout, or the standalone release.

In a checkout, code and data share the repository folder (db.sqlite3, .secret_key, app.log),
as they always have. The release (`scripts/release.py`, PyInstaller) unpacks its code into a
folder next to the `rtc-caster` executable and keeps what it writes in `data/` beside the
executable, so that unpacking a newer release next to it can keep the data. `RTC_DATA_DIR`
moves the data anywhere, in both cases.
"""
import os
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def is_release(frozen=None):
    """True when running as the standalone executable built by PyInstaller."""
    return bool(getattr(sys, "frozen", False) if frozen is None else frozen)


def code_dir(frozen=None, bundle=None):
    """Templates and static files ship here: the checkout, or the release's unpacked bundle."""
    if is_release(frozen):
        return Path(bundle or getattr(sys, "_MEIPASS"))
    return CHECKOUT


def data_dir(environ=None, frozen=None, executable=None):
    """The folder for the database, the secret key and the log, created if missing."""
    environ = os.environ if environ is None else environ
    chosen = (environ.get("RTC_DATA_DIR") or "").strip()
    if chosen:
        path = Path(chosen).expanduser()
    elif is_release(frozen):
        path = Path(executable or sys.executable).resolve().parent / "data"
    else:
        path = CHECKOUT
    path.mkdir(parents=True, exist_ok=True)
    return path


def command_line(frozen=None):
    """How the operator runs a management command here, for messages such as "reset it with …"."""
    return "rtc-caster" if is_release(frozen) else ".venv/bin/python manage.py"


def serve_command(frozen=None):
    """How the operator starts the server here."""
    return "rtc-caster" if is_release(frozen) else "./run.sh"

"""Screenshots of the listener page for the README: a real daphne, a real Chromium, the default profile playing.

    .venv/bin/python scripts/screenshots.py     # writes docs/listener-390x844.png and docs/listener-1280x800.png
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from tests.rigs.chromium import chromium_page  # noqa: E402
from tests.rigs.daphne import DaphneServer
from tests.waiting import wait_for  # noqa: E402

SIZES = [(390, 844), (1280, 800)]


def main():
    with tempfile.TemporaryDirectory() as workdir:
        db = Path(workdir) / "shots.sqlite3"
        env = {**os.environ, "RTC_DB_PATH": str(db), "RTC_ADMIN_PASSWORD": "screenshots-only"}
        for command in (["migrate", "--noinput", "-v", "0"], ["bootstrap"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=PROJECT, env=env, check=True, capture_output=True)
        server = DaphneServer(db, Path(workdir) / "app.log").start()
        try:
            for width, height in SIZES:
                with chromium_page(viewport={"width": width, "height": height}) as page:
                    page.goto(server.url("/listen/default/"))  # connects and autoplays by itself
                    wait_for(lambda: page.get_attribute("#status", "data-state") == "connected", 20, "connected")
                    wait_for(lambda: int(page.get_attribute("#stats", "data-bitrate-kbps")) > 0, 10, "stats")
                    path = PROJECT / "docs" / f"listener-{width}x{height}.png"
                    page.screenshot(path=str(path))
                    print("wrote", path.relative_to(PROJECT))
        finally:
            server.stop()


if __name__ == "__main__":
    main()

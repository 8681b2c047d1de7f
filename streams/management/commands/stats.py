"""Print the live numbers per stream (listeners, encoder bitrate), as admin shows them."""
import json
import urllib.error
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from rtccaster_site.paths import serve_command
from streams.ops import livestats


def from_local_server(port):
    """Single-process mode: ask the running server (its /status.json answers this machine)."""
    url = f"http://127.0.0.1:{port}/status.json"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status = json.load(response)
    except (urllib.error.URLError, OSError) as error:
        raise CommandError(f"No RTC Caster answers at {url} ({error}). Is it running ({serve_command()})?") from None
    stats = {}
    for hub in status["hubs"]:
        variant = {"codec": hub["codec"], "channels": hub["channels"], "bitrate": hub["measured_bitrate"]}
        livestats.add(stats, hub["slug"], hub["listeners"], variant)
    return stats


class Command(BaseCommand):
    help = "Live listeners and encoder bitrate per stream (all workers with REDIS_URL, else the local server)."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
        parser.add_argument("--port", type=int, default=None, help="the local server's port (default: RTC_PORT)")

    def handle(self, *args, port=None, **options):
        try:
            stats = livestats.collect() if settings.REDIS_URL else from_local_server(port or settings.RTC_PORT)
        except livestats.Unavailable as error:
            raise CommandError(str(error)) from None
        if options["json"]:
            self.stdout.write(json.dumps(stats, indent=2, sort_keys=True))
            return
        if not stats:
            self.stdout.write("No stream is playing.")
            return
        self.stdout.write(f"{'stream':<24} {'listeners':>9}  encoder")
        for slug, row in sorted(stats.items()):
            rates = ", ".join(f"{v['codec']} {'stereo' if v['channels'] == 2 else 'mono'} {v['bitrate'] / 1000:.1f} kb/s"
                              for v in row["variants"]) or "-"
            self.stdout.write(f"{slug:<24} {row['listeners']:>9}  {rates}")

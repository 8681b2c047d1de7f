"""List the capture devices a profile can use, by the stable names profiles store."""
import json

from django.core.management.base import BaseCommand, CommandError

from streams.audio import devices


class Command(BaseCommand):
    help = "List audio capture devices (inputs and loopbacks) with their stable names."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the list as JSON")

    def handle(self, *args, **options):
        found = self.find_devices()
        if options["json"]:
            self.print_json(found)
        else:
            self.print_table(found)

    def find_devices(self):
        try:
            return devices.list_devices()
        except devices.NoAudioSystem as error:
            raise CommandError(str(error)) from None

    def print_json(self, found):
        special = [{"name": name, "label": label} for name, label in devices.SPECIAL_DEVICES.items()]
        self.stdout.write(json.dumps({"devices": [d.as_dict() for d in found], "special": special}, indent=2))

    def print_table(self, found):
        self.stdout.write(f"{'index':>5}  {'host API':<16}  {'in':>3}  {'rate':>6}  {'flags':<16}  stable name")
        for device in found:
            flags = ",".join(flag for flag, on in (("loopback", device.is_loopback), ("default", device.is_default)) if on)
            index = "-" if device.index is None else str(device.index)
            self.stdout.write(
                f"{index:>5}  {device.host_api:<16}  {device.input_channels:>3}  {device.default_sample_rate:>6.0f}  "
                f"{flags:<16}  {device.name}"
            )
        self.stdout.write("\nA profile may also name:")
        for name, label in devices.SPECIAL_DEVICES.items():
            self.stdout.write(f"  {name:<18} {label}")

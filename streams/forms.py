"""The admin form of a profile: device names offered from what is present, typed names still accepted."""
import logging

from django import forms
from django.utils.html import format_html, format_html_join

from .audio import devices
from .models import StreamProfile

logger = logging.getLogger(__name__)


def present_devices():
    """(stable name, label) of the capture devices present now, special names first; [] without audio."""
    choices = list(devices.SPECIAL_DEVICES.items())
    try:
        found = devices.list_devices()
    except Exception as error:  # no audio system, PortAudio missing: the form still works with typed names
        logger.info("no device list for the admin form: %s", error)
        return choices
    for device in found:
        flags = [flag for flag, on in (("loopback", device.is_loopback), ("default", device.is_default)) if on]
        suffix = f" ({', '.join(flags)})" if flags else ""
        choices.append((device.name, f"{device.input_channels} ch, {device.default_sample_rate:.0f} Hz{suffix}"))
    return choices


class DeviceNameInput(forms.TextInput):
    """A text box with the present devices as suggestions (an HTML datalist)."""

    def __init__(self, choices=(), attrs=None):
        super().__init__({"list": "device-choices", "size": 60, **(attrs or {})})
        self.choices = list(choices)

    def render(self, name, value, attrs=None, renderer=None):
        box = super().render(name, value, attrs, renderer)
        options = format_html_join("", '<option value="{}">{}</option>', self.choices)
        return format_html('{}<datalist id="device-choices">{}</datalist>', box, options)


class StreamProfileForm(forms.ModelForm):
    class Meta:
        model = StreamProfile
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.present = present_devices()
        self.fields["device_name"].widget = DeviceNameInput(self.present)
        self.fields["device_name"].help_text = (
            "Pick a present device (loopbacks and defaults are marked) or type a stable name "
            "from `manage.py list_devices`; “default:loopback” is what this computer plays."
        )

    def absent_device(self):
        """The chosen device's name if it is not present now (saved anyway, with a warning), else None."""
        profile = self.instance
        if profile.source != StreamProfile.Source.DEVICE:
            return None
        present = {name for name, _ in self.present}
        return None if profile.device_name in present else profile.device_name

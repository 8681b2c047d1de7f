"""Which capture devices this machine has, under names that stay stable.

PortAudio numbers devices by position, and the numbers change when devices come
and go, so a profile stores a stable name instead: "<host API>: <device name>",
e.g. "ALSA: pulse", "Windows WASAPI: Speakers (Realtek) [Loopback]", or
"PulseAudio: alsa_output.pci-0000_00_1f.3.analog-stereo.monitor". Two special
names follow whatever the system's default is when capture starts.

On Linux with PulseAudio or PipeWire (pipewire-pulse), every source, including
each output's ".monitor" (the loopback of "what this PC plays"), is listed from
`pactl` and recorded natively through libpulse (pulsecapture.py). On Windows,
pyaudiowpatch lists WASAPI loopback devices.
"""
import contextlib
import shutil
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass

DEFAULT_INPUT = "default:input"
DEFAULT_LOOPBACK = "default:loopback"
SPECIAL_DEVICES = {DEFAULT_INPUT: "The default input", DEFAULT_LOOPBACK: "The default output's loopback"}
PULSE_HOST_API = "PulseAudio"


# PortAudio's initialise/terminate are not thread-safe, and admin pages, the list_devices
# command and capture threads all create PyAudio instances.
_portaudio_lock = threading.RLock()


class NoAudioSystem(RuntimeError):
    pass


@contextlib.contextmanager
def portaudio(module):
    """A PyAudio instance for the duration of the block, created and ended under one lock."""
    with _portaudio_lock:
        pa = module.PyAudio()
    try:
        yield pa
    finally:
        with _portaudio_lock:
            pa.terminate()


@dataclass(frozen=True)
class AudioDevice:
    name: str  # the stable name profiles store
    host_api: str
    label: str  # the device's own name
    index: int | None  # PortAudio index right now (None for PulseAudio sources)
    input_channels: int
    default_sample_rate: float
    is_loopback: bool = False
    is_default: bool = False
    pulse_source: str | None = None  # set for PulseAudio sources: the source's name, recorded through libpulse

    def as_dict(self):
        return asdict(self)


def pyaudio_module():
    """pyaudiowpatch on Windows (WASAPI loopback), PyAudio elsewhere: the same API."""
    if sys.platform == "win32":
        import pyaudiowpatch as module
    else:
        import pyaudio as module
    return module


def stable_name(host_api, label):
    return f"{host_api}: {label}"


def pulse_source_of(name):
    """The PulseAudio source that a stable name "PulseAudio: <source>" stands for, else None."""
    prefix = stable_name(PULSE_HOST_API, "")
    return name[len(prefix):] if name.startswith(prefix) and len(name) > len(prefix) else None


def portaudio_devices(pa):
    """Input-capable PortAudio devices (on Windows, WASAPI loopbacks included)."""
    try:
        default_input = pa.get_default_input_device_info()["index"]
    except (IOError, OSError):
        default_input = None
    devices = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        if info.get("maxInputChannels", 0) < 1:
            continue
        host_api = pa.get_host_api_info_by_index(info["hostApi"])["name"]
        devices.append(
            AudioDevice(
                name=stable_name(host_api, info["name"]),
                host_api=host_api,
                label=info["name"],
                index=index,
                input_channels=int(info["maxInputChannels"]),
                default_sample_rate=float(info["defaultSampleRate"]),
                is_loopback=bool(info.get("isLoopbackDevice", False)),
                is_default=index == default_input,
            )
        )
    return devices


def _pactl(*args):
    result = subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=5)
    if result.returncode != 0:
        raise OSError(result.stderr.strip() or f"pactl {' '.join(args)} failed")
    return result.stdout


def parse_pactl_sources(text):
    """`pactl list short sources` -> [(name, channels, rate)]; lines look like
    '1\tvirt.monitor\tmodule-null-sink.c\ts16le 2ch 44100Hz\tIDLE'."""
    sources = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 4:
            continue
        spec = parts[3].split()
        channels = next((int(s[:-2]) for s in spec if s.endswith("ch") and s[:-2].isdigit()), 2)
        rate = next((int(s[:-2]) for s in spec if s.endswith("Hz") and s[:-2].isdigit()), 48000)
        sources.append((parts[1], channels, rate))
    return sources


def pulse_defaults():
    """(default source, default sink) names from `pactl info`."""
    source = sink = None
    for line in _pactl("info").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Default Source":
            source = value.strip()
        elif key.strip() == "Default Sink":
            sink = value.strip()
    return source, sink


def pulse_available():
    if shutil.which("pactl") is None:
        return False
    try:
        _pactl("info")
        return True
    except (OSError, subprocess.TimeoutExpired):
        return False


def pulse_sources():
    """PulseAudio/PipeWire sources; '<sink>.monitor' sources are loopbacks."""
    default_source, _ = pulse_defaults()
    return [
        AudioDevice(
            name=stable_name(PULSE_HOST_API, source),
            host_api=PULSE_HOST_API,
            label=source,
            index=None,
            input_channels=channels,
            default_sample_rate=float(rate),
            is_loopback=source.endswith(".monitor"),
            is_default=source == default_source,
            pulse_source=source,
        )
        for source, channels, rate in parse_pactl_sources(_pactl("list", "short", "sources"))
    ]


def list_devices(module=None):
    """Every capture device present now. Raises NoAudioSystem when there is none at all."""
    module = module or pyaudio_module()
    with portaudio(module) as pa:  # a new instance: PortAudio scans devices only when initialised
        devices = portaudio_devices(pa)
    if pulse_available():
        devices += pulse_sources()
    if not devices:
        raise NoAudioSystem(
            "No audio capture device was found: no PortAudio input device and no PulseAudio/PipeWire server. "
            "Check that a sound server runs for this user (pactl info) or that a sound card is present."
        )
    return devices


def resolve(name, module=None):
    """The AudioDevice that a stable or special name means now, or None if it is absent."""
    module = module or pyaudio_module()
    if name == DEFAULT_LOOPBACK:
        return default_loopback(module)
    devices = list_devices(module)
    if name == DEFAULT_INPUT:
        return next((d for d in devices if d.is_default and d.index is not None), None)
    return next((d for d in devices if d.name == name), None)


def default_loopback(module):
    """The loopback of the default output: WASAPI's on Windows, the default sink's monitor on PulseAudio."""
    with portaudio(module) as pa:
        if hasattr(pa, "get_default_wasapi_loopback"):
            try:
                info = pa.get_default_wasapi_loopback()
            except (IOError, OSError, LookupError):
                return None
            return next((d for d in portaudio_devices(pa) if d.index == info["index"]), None)
    if not pulse_available():
        return None
    _, sink = pulse_defaults()
    return next((d for d in pulse_sources() if d.pulse_source == f"{sink}.monitor"), None)

"""Device discovery: the real PulseAudio rig on Linux, and a FAKE pyaudiowpatch for Windows."""
import json
import subprocess
import sys

import numpy as np
import pytest
from django.core.management import call_command

from streams.audio import devices
from streams.audio.capture import OpenStream
from streams.audio.config import SAMPLE_RATE
from tests import fake_pyaudiowpatch
from tests.listener import dominant_frequency
from tests.rigs.pulseaudio import PulseAudioRig


@pytest.fixture
def pulse():
    with PulseAudioRig() as rig:
        yield rig


def list_devices_command(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", "list_devices", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_list_devices_shows_the_null_sink_monitor_as_a_loopback(pulse):
    result = list_devices_command(pulse.child_env())
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.endswith("PulseAudio: virt.monitor"))
    assert "loopback" in line and line.split()[1] == "PulseAudio"  # index "-", then the host API
    assert result.stdout.splitlines()[0].split()[:3] == ["index", "host", "API"]
    assert "ALSA: pulse" in result.stdout
    assert "default:loopback" in result.stdout


def test_list_devices_json_parses_and_marks_loopback_and_default(pulse):
    result = list_devices_command(pulse.child_env(), "--json")
    assert result.returncode == 0, result.stderr
    listed = {d["name"]: d for d in json.loads(result.stdout)["devices"]}
    monitor = listed["PulseAudio: virt.monitor"]
    assert monitor["is_loopback"] and monitor["is_default"] and monitor["input_channels"] == 2
    assert monitor["host_api"] == "PulseAudio" and monitor["index"] is None
    assert listed["ALSA: pulse"]["index"] is not None


def test_list_devices_without_any_audio_system_says_so_and_fails(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PULSE_SERVER": f"unix:{tmp_path}/none", "XDG_RUNTIME_DIR": str(tmp_path)}
    result = list_devices_command(env)
    assert result.returncode != 0
    assert "No audio capture device was found" in result.stderr


def test_default_loopback_on_pulseaudio_is_the_default_sinks_monitor(pulse):
    import pyaudio

    assert devices.resolve(devices.DEFAULT_LOOPBACK, pyaudio).name == "PulseAudio: virt.monitor"


def test_fake_windows_wasapi_loopback_is_listed_as_a_loopback(monkeypatch):
    monkeypatch.setattr(devices, "pulse_available", lambda: False)
    listed = {d.name: d for d in devices.list_devices(fake_pyaudiowpatch)}
    loopback = listed["Windows WASAPI: Speakers (Realtek(R) Audio) [Loopback]"]
    assert loopback.is_loopback and loopback.input_channels == 2
    assert listed["MME: Microphone (USB Audio)"].is_default
    assert "Windows WASAPI: Speakers (Realtek(R) Audio)" not in listed  # output only: not capturable


def test_fake_windows_default_loopback_is_wasapis(monkeypatch):
    monkeypatch.setattr(devices, "pulse_available", lambda: False)
    assert devices.resolve(devices.DEFAULT_LOOPBACK, fake_pyaudiowpatch).label == "Speakers (Realtek(R) Audio) [Loopback]"
    assert devices.resolve(devices.DEFAULT_INPUT, fake_pyaudiowpatch).name == "MME: Microphone (USB Audio)"


def test_fake_windows_list_devices_command_marks_the_loopback(monkeypatch, capsys):
    monkeypatch.setattr(devices, "pulse_available", lambda: False)
    monkeypatch.setattr(devices, "pyaudio_module", lambda: fake_pyaudiowpatch)
    call_command("list_devices", "--json")
    listed = json.loads(capsys.readouterr().out)["devices"]
    assert [d["name"] for d in listed if d["is_loopback"]] == ["Windows WASAPI: Speakers (Realtek(R) Audio) [Loopback]"]


def test_fake_windows_loopback_opens_at_its_mix_format_and_is_resampled_to_48k(monkeypatch):
    monkeypatch.setattr(devices, "pulse_available", lambda: False)
    device = devices.resolve("Windows WASAPI: Speakers (Realtek(R) Audio) [Loopback]", fake_pyaudiowpatch)
    stream = OpenStream(fake_pyaudiowpatch, device)
    try:
        samples = np.concatenate([stream.read_block() for _ in range(100)])  # 1 s
    finally:
        stream.close()
    assert fake_pyaudiowpatch.opened[-1] == (3, 44100, 2)
    assert samples.shape[1] == 2 and abs(len(samples) - SAMPLE_RATE) < 200
    assert abs(dominant_frequency(samples[200:, 0], SAMPLE_RATE) - fake_pyaudiowpatch.TONE_HZ) <= 2


def test_an_alsa_device_is_still_captured_through_portaudio_at_its_own_rate(pulse):
    import pyaudio

    device = devices.resolve("ALSA: default", pyaudio)  # ALSA's default, which the pulse plug-in routes to virt.monitor
    tone = pulse.play_tone(1000, seconds=30)
    stream = OpenStream(pyaudio, device)
    blocks = []

    def hears_the_tone():
        recent = np.concatenate(blocks)[-SAMPLE_RATE // 2:, 0] if blocks else np.zeros(0)
        return len(recent) == SAMPLE_RATE // 2 and abs(dominant_frequency(recent, SAMPLE_RATE) - 1000) <= 2

    try:
        while (len(blocks) < 100 or not hears_the_tone()) and len(blocks) < 1000:  # 1 to 10 s of sound
            blocks.append(stream.read_block())
    finally:
        stream.close()
        tone.terminate()
    assert hears_the_tone(), "no 1 kHz in 10 s of ALSA's default device"
    assert stream.rate == int(device.default_sample_rate) == 44100  # resampled to 48 kHz here, not by PortAudio
    first_second = np.concatenate(blocks[:100])
    assert first_second.shape[1] == 2 and abs(len(first_second) - SAMPLE_RATE) < 200


def test_a_pulseaudio_stable_name_gives_its_source_and_other_names_none():
    assert devices.pulse_source_of("PulseAudio: alsa_output.pci-0000_00_1f.3.analog-stereo.monitor") == (
        "alsa_output.pci-0000_00_1f.3.analog-stereo.monitor")
    assert devices.pulse_source_of("ALSA: pulse") is None
    assert devices.pulse_source_of(devices.DEFAULT_LOOPBACK) is None
    assert devices.pulse_source_of("PulseAudio: ") is None


def test_parse_pactl_sources():
    text = "1\tvirt.monitor\tmodule-null-sink.c\ts16le 2ch 44100Hz\tIDLE\n2\tmic\tmodule-alsa-card.c\ts32le 1ch 48000Hz\tRUNNING\n"
    assert devices.parse_pactl_sources(text) == [("virt.monitor", 2, 44100), ("mic", 1, 48000)]


def test_admin_offers_present_devices_marked_and_warns_about_an_absent_one(pulse, admin_client):
    page = admin_client.get("/admin/streams/streamprofile/add/").content.decode()
    assert '<datalist id="device-choices">' in page
    assert 'value="PulseAudio: virt.monitor"' in page and "loopback, default" in page
    assert 'value="default:loopback"' in page

    form = {
        "name": "Desk", "slug": "desk", "enabled": "on", "source": "device", "device_name": "ALSA: USB desk",
        "sine_frequency": 440, "channels": 2, "sample_rate": 48000, "codec": "opus", "audio_bitrate": 96000,
        "opus_max_playback_rate": 48000, "opus_inband_fec": "on", "opus_packet_loss_percent": 10,
        "opus_dtx": "on", "opus_application": "audio", "opus_frame_ms": 20, "access": "public", "access_key": "a-key-for-this-test",
        "silence_alarm_dbfs": -60, "silence_alarm_seconds": 10, "clipping_alarm_percent": 0.1,
    }
    response = admin_client.post("/admin/streams/streamprofile/add/", form, follow=True)
    assert "is not present now" in response.content.decode()
    from streams.models import StreamProfile

    assert StreamProfile.objects.get(slug="desk").device_name == "ALSA: USB desk"

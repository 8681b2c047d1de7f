"""A stand-in for pyaudiowpatch, which exists only on Windows: FAKE, for testing the Windows code path.

It mimics what the real module reports on a typical Windows PC: MME and WASAPI
host APIs, a microphone, speakers, and the "[Loopback]" twin that pyaudiowpatch
adds for each WASAPI output (isLoopbackDevice=True), plus get_default_wasapi_loopback().
Its input streams return a sine at the device's own rate, as WASAPI loopback delivers
the mix format (here 44.1 kHz stereo).
"""
import numpy as np

paInt16 = 8
paWASAPI = 13

HOST_APIS = [{"index": 0, "name": "MME", "type": 2}, {"index": 1, "name": "Windows WASAPI", "type": paWASAPI}]
DEVICES = [
    {"name": "Microphone (USB Audio)", "hostApi": 0, "maxInputChannels": 2, "maxOutputChannels": 0, "defaultSampleRate": 44100.0},
    {"name": "Speakers (Realtek(R) Audio)", "hostApi": 1, "maxInputChannels": 0, "maxOutputChannels": 2, "defaultSampleRate": 48000.0},
    {"name": "Microphone (USB Audio)", "hostApi": 1, "maxInputChannels": 1, "maxOutputChannels": 0, "defaultSampleRate": 48000.0},
    {
        "name": "Speakers (Realtek(R) Audio) [Loopback]",
        "hostApi": 1,
        "maxInputChannels": 2,
        "maxOutputChannels": 0,
        "defaultSampleRate": 44100.0,
        "isLoopbackDevice": True,
    },
]
TONE_HZ = 1000.0
opened = []


class FakeStream:
    def __init__(self, rate, channels):
        self.rate, self.channels, self._position = rate, channels, 0

    def read(self, frames, exception_on_overflow=True):
        t = (self._position + np.arange(frames)) / self.rate
        self._position += frames
        tone = (0.5 * 32767 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)
        return np.repeat(tone[:, None], self.channels, axis=1).tobytes()

    def stop_stream(self):
        pass

    def close(self):
        pass


class PyAudio:
    def get_device_count(self):
        return len(DEVICES)

    def get_device_info_by_index(self, index):
        return {"index": index, **DEVICES[index]}

    def get_host_api_info_by_index(self, index):
        return HOST_APIS[index]

    def get_default_input_device_info(self):
        return self.get_device_info_by_index(0)

    def get_default_wasapi_loopback(self):
        return self.get_device_info_by_index(3)

    def open(self, format, channels, rate, input, input_device_index, frames_per_buffer):
        info = DEVICES[input_device_index]
        if info.get("isLoopbackDevice") and (rate != info["defaultSampleRate"] or channels > info["maxInputChannels"]):
            raise OSError(-9997, "Invalid sample rate")  # WASAPI loopback opens only at the mix format
        opened.append((input_device_index, rate, channels))
        return FakeStream(rate, channels)

    def terminate(self):
        pass

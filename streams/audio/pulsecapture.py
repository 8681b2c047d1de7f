"""Recording a PulseAudio (or PipeWire) source natively, through libpulse over ctypes.

A source is recorded as parec records it: a record stream at 48 kHz stereo s16le (the
server converts whatever the source runs at), with a 10 ms fragment size and latency
adjusted to it, so blocks arrive every 10 ms. It replaces PortAudio's ALSA "pulse" device,
which could only be told its source through the PULSE_SOURCE variable of the whole process.

The asynchronous API is used rather than libpulse-simple's, for one flag: PA_STREAM_DONT_MOVE.
Without it PulseAudio quietly moves a recording whose source vanished to another source
(the default one), and capture would go on recording the wrong sound. With it the server
ends the stream instead, and the next read fails: the device is lost, and capture retries.
The stream's own record of its source is checked after each read too (pipewire-pulse might
still move it). No thread of libpulse's own: its main loop runs on the caller's thread (the
capture thread, real-time where granted), waiting at most POLL_SECONDS at a time.

    stream = PulseRecordStream("alsa_output.pci-0000_00_1f.3.analog-stereo.monitor")
    block = stream.read_block()   # int16 (n, 2) at 48 kHz, as the source delivered it
    stream.close()
"""
import ctypes
import ctypes.util
import threading
import time

import numpy as np

from .config import SAMPLE_RATE

CHANNELS = 2
FRAME_BYTES = 2 * CHANNELS  # s16le stereo
FRAGMENT_MS = 10
APPLICATION_NAME = b"RTC Caster"
STREAM_NAME = b"capture"
CONNECT_SECONDS = 5.0  # a server that does not answer in this time is not there
STALL_SECONDS = 5.0  # a source that delivers nothing for this long is lost (silence comes after 200 ms anyway)
POLL_SECONDS = 0.1  # longest wait for the server in one go

# pulse/def.h and pulse/sample.h
PA_CONTEXT_NOAUTOSPAWN = 0x1  # never start a sound server of our own
PA_CONTEXT_READY, PA_CONTEXT_FAILED, PA_CONTEXT_TERMINATED = 4, 5, 6
PA_STREAM_READY, PA_STREAM_FAILED, PA_STREAM_TERMINATED = 2, 3, 4
PA_STREAM_DONT_MOVE = 0x200
PA_STREAM_ADJUST_LATENCY = 0x2000
PA_SAMPLE_S16LE = 3
PA_DEFAULT = 0xFFFFFFFF  # (uint32_t) -1: "the server's choice" in pa_buffer_attr
_SIZE_ERROR = ctypes.c_size_t(-1).value  # what pa_stream_readable_size returns on error


class PulseError(OSError):
    pass


class _SampleSpec(ctypes.Structure):
    _fields_ = [("format", ctypes.c_int), ("rate", ctypes.c_uint32), ("channels", ctypes.c_uint8)]


class _BufferAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in ("maxlength", "tlength", "prebuf", "minreq", "fragsize")]


_P = ctypes.c_void_p
_SIGNATURES = {  # name: (restype, argtypes)
    "pa_mainloop_new": (_P, []),
    "pa_mainloop_get_api": (_P, [_P]),
    "pa_mainloop_prepare": (ctypes.c_int, [_P, ctypes.c_int]),
    "pa_mainloop_poll": (ctypes.c_int, [_P]),
    "pa_mainloop_dispatch": (ctypes.c_int, [_P]),
    "pa_mainloop_free": (None, [_P]),
    "pa_context_new": (_P, [_P, ctypes.c_char_p]),
    "pa_context_connect": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_int, _P]),
    "pa_context_get_state": (ctypes.c_int, [_P]),
    "pa_context_errno": (ctypes.c_int, [_P]),
    "pa_context_disconnect": (None, [_P]),
    "pa_context_unref": (None, [_P]),
    "pa_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "pa_stream_new": (_P, [_P, ctypes.c_char_p, ctypes.POINTER(_SampleSpec), _P]),
    "pa_stream_connect_record": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.POINTER(_BufferAttr), ctypes.c_int]),
    "pa_stream_get_state": (ctypes.c_int, [_P]),
    "pa_stream_get_device_name": (ctypes.c_char_p, [_P]),
    "pa_stream_readable_size": (ctypes.c_size_t, [_P]),
    "pa_stream_peek": (ctypes.c_int, [_P, ctypes.POINTER(_P), ctypes.POINTER(ctypes.c_size_t)]),
    "pa_stream_drop": (ctypes.c_int, [_P]),
    "pa_stream_disconnect": (ctypes.c_int, [_P]),
    "pa_stream_unref": (None, [_P]),
}
_library = None
_library_lock = threading.Lock()


def libpulse():
    """libpulse, loaded once with the signatures used here; PulseError if it is not installed."""
    global _library
    with _library_lock:
        if _library is None:
            try:
                library = ctypes.CDLL("libpulse.so.0")
            except OSError:
                try:
                    library = ctypes.CDLL(ctypes.util.find_library("pulse") or "libpulse.so.0")
                except OSError as error:
                    raise PulseError(f"libpulse is not installed ({error}): install libpulse0") from None
            for function, (restype, argtypes) in _SIGNATURES.items():
                getattr(library, function).restype = restype
                getattr(library, function).argtypes = argtypes
            _library = library
        return _library


class PulseRecordStream:
    """A record stream on one PulseAudio source. Opening raises PulseError if the server or the
    source is not there; read_block() raises PulseError once the source is gone."""

    def __init__(self, source):
        self.source = source
        self._pa = libpulse()
        self._mainloop = self._context = self._stream = None
        self._partial = b""  # a trailing part of a frame, should a fragment ever end inside one
        try:
            self._mainloop = self._pa.pa_mainloop_new()
            self._context = self._pa.pa_context_new(self._pa.pa_mainloop_get_api(self._mainloop), APPLICATION_NAME)
            self._connect()
            self._record()
        except BaseException:
            self.close()
            raise

    def _connect(self):
        """To the server libpulse finds for this user (PULSE_SERVER, client.conf, the user's socket)."""
        pa = self._pa
        if pa.pa_context_connect(self._context, None, PA_CONTEXT_NOAUTOSPAWN, None) < 0:
            raise PulseError(f"no PulseAudio server: {self._context_error()}")
        deadline = time.monotonic() + CONNECT_SECONDS
        while (state := pa.pa_context_get_state(self._context)) != PA_CONTEXT_READY:
            if state in (PA_CONTEXT_FAILED, PA_CONTEXT_TERMINATED):
                raise PulseError(f"no PulseAudio server: {self._context_error()}")
            if time.monotonic() > deadline:
                raise PulseError(f"the PulseAudio server did not answer in {CONNECT_SECONDS:g} s")
            self._iterate()

    def _record(self):
        pa = self._pa
        spec = _SampleSpec(PA_SAMPLE_S16LE, SAMPLE_RATE, CHANNELS)
        self._stream = pa.pa_stream_new(self._context, STREAM_NAME, ctypes.byref(spec), None)
        if not self._stream:
            raise PulseError(f"cannot make a record stream: {self._context_error()}")
        fragment = SAMPLE_RATE * FRAGMENT_MS // 1000 * FRAME_BYTES
        attr = _BufferAttr(SAMPLE_RATE * FRAME_BYTES, PA_DEFAULT, PA_DEFAULT, PA_DEFAULT, fragment)  # holds 1 s at most
        flags = PA_STREAM_ADJUST_LATENCY | PA_STREAM_DONT_MOVE
        if pa.pa_stream_connect_record(self._stream, self.source.encode(), ctypes.byref(attr), flags) < 0:
            raise PulseError(f"cannot record {self.source}: {self._context_error()}")
        deadline = time.monotonic() + CONNECT_SECONDS
        while (state := pa.pa_stream_get_state(self._stream)) != PA_STREAM_READY:
            if state in (PA_STREAM_FAILED, PA_STREAM_TERMINATED):
                raise PulseError(f"cannot record {self.source}: {self._context_error()}")
            if time.monotonic() > deadline:
                raise PulseError(f"PulseAudio did not start recording {self.source} in {CONNECT_SECONDS:g} s")
            self._iterate()

    def read_block(self):
        """All the sound the source delivered since the last call, as int16 (n, 2) with n > 0
        (about 10 ms, the fragment size asked for). Waits for it; PulseError if the source is gone.
        A hole in the stream comes as zeros, so that the count of samples stays the device's clock."""
        deadline = time.monotonic() + STALL_SECONDS
        while True:
            self._check_stream()
            chunks = []
            while (chunk := self._take()) is not None:
                chunks.append(chunk)
            block = self._frames(b"".join(chunks))
            if len(block):
                return block
            if time.monotonic() > deadline:
                raise PulseError(f"{self.source} delivered nothing for {STALL_SECONDS:g} s")
            self._iterate()

    def _take(self):
        """The next fragment that libpulse has received, or None."""
        pa = self._pa
        if pa.pa_stream_readable_size(self._stream) in (0, _SIZE_ERROR):
            return None
        data, size = _P(), ctypes.c_size_t()
        if pa.pa_stream_peek(self._stream, ctypes.byref(data), ctypes.byref(size)) < 0:
            raise PulseError(f"reading {self.source} failed: {self._context_error()}")
        if not size.value:
            return None
        chunk = ctypes.string_at(data.value, size.value) if data.value else bytes(size.value)
        pa.pa_stream_drop(self._stream)
        return chunk

    def _frames(self, chunk):
        chunk = self._partial + chunk
        whole = len(chunk) - len(chunk) % FRAME_BYTES
        self._partial = chunk[whole:]
        return np.frombuffer(chunk[:whole], dtype=np.int16).reshape(-1, CHANNELS)

    def _check_stream(self):
        pa = self._pa
        state = pa.pa_stream_get_state(self._stream)
        if state != PA_STREAM_READY:
            raise PulseError(f"the recording of {self.source} ended: {self._context_error()}")
        now_on = pa.pa_stream_get_device_name(self._stream)
        if now_on is not None and now_on.decode(errors="replace") != self.source:
            raise PulseError(f"the recording of {self.source} was moved to {now_on.decode(errors='replace')}")

    def _iterate(self):
        """Wait up to POLL_SECONDS for the server, then handle what it sent."""
        pa = self._pa
        if (pa.pa_mainloop_prepare(self._mainloop, int(POLL_SECONDS * 1e6)) < 0
                or pa.pa_mainloop_poll(self._mainloop) < 0 or pa.pa_mainloop_dispatch(self._mainloop) < 0):
            raise PulseError("libpulse's main loop failed")

    def _context_error(self):
        return self._pa.pa_strerror(self._pa.pa_context_errno(self._context)).decode(errors="replace")

    def close(self):
        pa = self._pa
        if self._stream:
            pa.pa_stream_disconnect(self._stream)
            pa.pa_stream_unref(self._stream)
            self._stream = None
        if self._context:
            pa.pa_context_disconnect(self._context)
            pa.pa_context_unref(self._context)
            self._context = None
        if self._mainloop:
            pa.pa_mainloop_free(self._mainloop)
            self._mainloop = None

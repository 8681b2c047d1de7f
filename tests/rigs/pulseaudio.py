"""A private, headless PulseAudio daemon for tests.

The daemon lives in its own temporary directory (socket, pid file, state, log), so it
never touches a desktop session and needs neither dbus nor a real sound card: sound goes
to null sinks, and every null sink has a ".monitor" source that records what it plays.

A null sink left to itself renders in blocks of up to 2 s, and a recorder that connects
gets its first samples only when the current block ends: up to 2 s late. So by default
each null sink gets a "keeper", a low-latency parec on its monitor writing to /dev/null,
which keeps the sink rendering in 10 ms blocks; first reads then come in ~20 ms.

    rig = PulseAudioRig()
    env = rig.start()              # also exported into os.environ for in-process PortAudio
    player = rig.play_tone(1000, seconds=60)   # paplay into sink "virt"
    ...                            # record from source "virt.monitor"
    player.terminate()
    rig.stop()
"""
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import wave

import numpy as np

from tests.rigs.process import stop_process
from tests.waiting import wait_for

ENV_NAMES = ("XDG_RUNTIME_DIR", "PULSE_RUNTIME_PATH", "PULSE_STATE_PATH", "PULSE_SERVER")


class PulseAudioRig:
    def __init__(self, default_sink="virt", start_timeout=10.0, keep_awake=True):
        self.default_sink = default_sink
        self.start_timeout = start_timeout
        self.keep_awake = keep_awake
        self.dir = None
        self.env = {}
        self._saved_environ = {}
        self._tone_files = []
        self._players = []
        self._keepers = {}  # sink name -> parec Popen

    # -- daemon -------------------------------------------------------------------------

    @property
    def socket(self):
        return os.path.join(self.dir, "native")

    @property
    def log_path(self):
        return os.path.join(self.dir, "pulse.log")

    def start(self):
        """Start the daemon; return the environment a child process needs to reach it.

        The same variables are set in os.environ of this process (and restored by stop()),
        so PortAudio/ALSA's pulse plugin in this process finds the private server.
        """
        if self.dir is not None:
            raise RuntimeError("PulseAudioRig already started")
        self.dir = tempfile.mkdtemp(prefix="pulse-rig-")
        os.chmod(self.dir, 0o700)
        self.env = {
            "XDG_RUNTIME_DIR": self.dir,
            "PULSE_RUNTIME_PATH": self.dir,
            "PULSE_STATE_PATH": self.dir,
            "PULSE_SERVER": f"unix:{self.socket}",
        }
        script = os.path.join(self.dir, "rig.pa")
        with open(script, "w") as f:
            f.write(
                f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}\n"
                f"load-module module-null-sink sink_name={self.default_sink}\n"
                f"set-default-sink {self.default_sink}\n"
                f"set-default-source {self.default_sink}.monitor\n"
            )
        self._saved_environ = {name: os.environ.get(name) for name in ENV_NAMES}
        os.environ.update(self.env)
        command = [
            "pulseaudio", "--daemonize=yes", "--system=false", "--exit-idle-time=-1",
            "--use-pid-file=yes", f"--log-target=file:{self.log_path}", "-n", "-F", script,
        ]
        finished = subprocess.run(command, env=self.child_env(), capture_output=True, text=True,
                                  timeout=self.start_timeout)
        if finished.returncode != 0:
            log = self._read_log()
            self._cleanup()
            raise RuntimeError(f"pulseaudio failed to start (exit {finished.returncode}):\n"
                               f"{finished.stderr}\n{log}")
        try:
            wait_for(self.is_running, self.start_timeout, "pulseaudio to answer `pactl info`")
        except TimeoutError as error:
            log = self._read_log()
            self.stop()
            raise TimeoutError(f"{error}\n{log}") from None
        if self.keep_awake:
            self.keep_sink_awake(self.default_sink)
        return dict(self.env)

    def child_env(self):
        """os.environ plus the rig's variables: pass as env= to subprocesses."""
        return {**os.environ, **self.env}

    def is_running(self):
        if self.dir is None:
            return False
        result = subprocess.run(["pactl", "info"], env=self.child_env(),
                                capture_output=True, text=True, timeout=5)
        return result.returncode == 0

    def pid(self):
        try:
            with open(os.path.join(self.dir, "pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError, TypeError):
            return None

    def stop(self, timeout=10.0):
        """Kill the daemon, delete its directory and restore os.environ."""
        if self.dir is None:
            return
        for process in [*self._players, *self._keepers.values()]:
            _end(process)
        self._players, self._keepers = [], {}
        pid = self.pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
                wait_for(lambda: not _process_alive(pid), timeout, f"pulseaudio pid {pid} to exit")
            except ProcessLookupError:
                pass
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
        self._cleanup()

    def _cleanup(self):
        for name, value in self._saved_environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environ = {}
        for path in self._tone_files:
            try:
                os.unlink(path)
            except OSError:
                pass
        self._tone_files = []
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def _read_log(self):
        try:
            with open(self.log_path) as f:
                return f.read()[-4000:]
        except OSError:
            return "(no pulseaudio log)"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- pactl ------------------------------------------------------------------------

    def pactl(self, *args):
        result = subprocess.run(["pactl", *args], env=self.child_env(),
                                capture_output=True, text=True, timeout=10)
        if result.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def _short_list(self, kind):
        return [line.split("\t") for line in self.pactl("list", "short", kind).splitlines() if line]

    def sources(self):
        """Names of all sources, e.g. ["virt.monitor"]."""
        return [fields[1] for fields in self._short_list("sources")]

    def sinks(self):
        return [fields[1] for fields in self._short_list("sinks")]

    def load_null_sink(self, name="virt", keep_awake=None):
        """Add a null sink (and its "<name>.monitor" source); return the module index."""
        index = int(self.pactl("load-module", "module-null-sink", f"sink_name={name}").strip())
        wait_for(lambda: f"{name}.monitor" in self.sources(), 5, f"source {name}.monitor")
        if self.keep_awake if keep_awake is None else keep_awake:
            self.keep_sink_awake(name)
        return index

    def unload_null_sink(self, name="virt"):
        """Remove the null sink called name; return the index of the module unloaded."""
        if name in self._keepers:
            _end(self._keepers.pop(name))
        for fields in self._short_list("modules"):
            index, module, arguments = fields[0], fields[1], fields[2] if len(fields) > 2 else ""
            if module == "module-null-sink" and f"sink_name={name}" in arguments.split():
                self.pactl("unload-module", index)
                wait_for(lambda: f"{name}.monitor" not in self.sources(), 5,
                           f"source {name}.monitor to disappear")
                return int(index)
        raise LookupError(f"no module-null-sink with sink_name={name}")

    def sink_latency(self, name):
        """(current, configured) latency of sink name in microseconds, from `pactl list sinks`.

        For a null sink "current" is the time left in the block being rendered."""
        for block in self.pactl("list", "sinks").split("\n\n"):
            if re.search(rf"^\s*Name: {re.escape(name)}$", block, re.M):
                match = re.search(r"Latency: (\d+) usec, configured (\d+) usec", block)
                return int(match[1]), int(match[2])
        raise LookupError(f"no sink {name}")

    def keep_sink_awake(self, name, latency_msec=10, timeout=5.0):
        """Attach a low-latency recorder ("keeper") to name's monitor, so that the sink
        renders in short blocks and later recorders get their first samples at once.

        The sink is suspended while the keeper connects: on resume it starts rendering with
        the keeper's short latency instead of finishing a block of up to 2 s."""
        if name in self._keepers:
            return
        monitor = f"{name}.monitor"
        source_index = next(fields[0] for fields in self._short_list("sources") if fields[1] == monitor)
        self.pactl("suspend-sink", name, "1")
        try:
            self._keepers[name] = subprocess.Popen(
                ["parec", f"--device={monitor}", f"--latency-msec={latency_msec}", "--raw"],
                env=self.child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(lambda: any(fields[1] == source_index
                                   for fields in self._short_list("source-outputs")),
                       timeout, f"the keeper recorder to connect to {monitor}")
        finally:
            self.pactl("suspend-sink", name, "0")
        limit = 2 * latency_msec * 1000

        def short_blocks():
            current, configured = self.sink_latency(name)
            return configured <= limit and current <= limit

        wait_for(short_blocks, timeout, f"sink {name} to render in blocks of <= {limit} usec")

    # -- sound ------------------------------------------------------------------------

    def play_tone(self, frequency, seconds, sink="virt", rate=48000, channels=1, amplitude=0.5):
        """Play a sine tone into sink with paplay; return the Popen (terminate() to stop early).

        A long tone (seconds=60) serves as a "looping" source for a test of any length.
        """
        t = np.arange(int(rate * seconds)) / rate
        tone = (amplitude * 32767 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
        return self.play_samples(np.repeat(tone[:, None], channels, axis=1), sink, rate)

    def play_samples(self, samples, sink="virt", rate=48000):
        """Play int16 samples of shape (n, channels) into sink with paplay; return the Popen."""
        handle, path = tempfile.mkstemp(prefix="play-", suffix=".wav", dir=self.dir)
        os.close(handle)
        with wave.open(path, "wb") as wav:
            wav.setnchannels(samples.shape[1])
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(np.ascontiguousarray(samples, dtype=np.int16).tobytes())
        self._tone_files.append(path)
        player = subprocess.Popen(["paplay", f"--device={sink}", path], env=self.child_env(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._players.append(player)
        return player


@contextlib.contextmanager
def playing(player):
    """While inside, `player` (what play_tone() or play_samples() returned) plays; it stops on leaving:

        with playing(rig.play_tone(700, seconds=30)):
            ...
    """
    try:
        yield player
    finally:
        player.terminate()


def _end(process, timeout=5.0):
    stop_process(process, timeout)
    for stream in (process.stdout, process.stderr):
        if stream:
            stream.close()


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False

"""coturn on 127.0.0.1 for tests: a TURN relay with one long-term-credential user.

Everything stays on loopback: it listens on 127.0.0.1, relays from 127.0.0.1 (a port range of
its own) and is allowed loopback peers, which a real deployment would not allow.
"""
import shutil
import socket

from aioice import stun

from .daphne import free_port
from .process import ServerProcess

USER, PASSWORD, REALM = "venue", "s3cret-turn", "rtccaster.test"


class TurnServer(ServerProcess):
    def __init__(self, log_path):
        super().__init__(log_path)
        self.port = free_port()
        self.relay_ports = (49_160, 49_200)

    def ice_server(self):
        """The RTC_ICE_SERVERS entry for this relay."""
        return {"urls": f"turn:127.0.0.1:{self.port}?transport=udp", "username": USER, "credential": PASSWORD}

    def start(self, timeout=10):
        binary = shutil.which("turnserver")
        if binary is None:
            raise RuntimeError("coturn's turnserver is missing: run scripts/setup.sh --dev")
        command = [
            binary, "-n", "--no-cli", "--no-tls", "--no-dtls", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
            f"--listening-port={self.port}", f"--min-port={self.relay_ports[0]}", f"--max-port={self.relay_ports[1]}",
            "--lt-cred-mech", f"--user={USER}:{PASSWORD}", f"--realm={REALM}", "--allow-loopback-peers",
            "--no-multicast-peers", f"--log-file={self.log_path}", "--simple-log", "--verbose",
        ]
        self.launch(command, self._answers_stun, f"coturn on port {self.port}", timeout)
        return self

    def _answers_stun(self):
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.settimeout(0.2)
            probe.sendto(bytes(request), ("127.0.0.1", self.port))
            try:
                return bool(probe.recv(2048))
            except OSError:
                return False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

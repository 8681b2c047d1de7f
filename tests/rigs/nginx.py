"""nginx on 127.0.0.1 terminating TLS in front of a daphne, configured with docs/deployment.md's own
`location /` block, so the documented example is what the test runs.

It connects to daphne from 127.0.0.2 (`proxy_bind`), so the server sees the proxy's address
on the socket and the client's (127.0.0.1) only in X-Forwarded-For.
"""
import re
import shutil
from pathlib import Path

from .daphne import free_port
from .process import ServerProcess, accepts_tcp

DEPLOYMENT = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
PROXY_ADDRESS = "127.0.0.2"


def readme_location_block():
    """The nginx `location / { ... }` example in docs/deployment.md."""
    found = re.search(r"```nginx\n(.*?)```", DEPLOYMENT.read_text(), re.S)
    if not found:
        raise AssertionError("docs/deployment.md has no ```nginx example")
    return "\n".join(line.strip() for line in found.group(1).splitlines())


class NginxProxy(ServerProcess):
    def __init__(self, directory, upstream_port, cert, key):
        directory = Path(directory)
        super().__init__(directory / "error.log")
        self.directory = directory
        self.port = free_port()
        location = readme_location_block().replace("127.0.0.1:8088", f"127.0.0.1:{upstream_port}")
        location = location.replace("location / {", f"location / {{\nproxy_bind {PROXY_ADDRESS};", 1)
        temp = directory / "temp"
        temp.mkdir(parents=True, exist_ok=True)
        self.config = directory / "nginx.conf"
        self.config.write_text(f"""
daemon off;
worker_processes 1;
pid {directory / 'nginx.pid'};
error_log {self.log_path} info;
events {{ worker_connections 64; }}
http {{
    access_log {directory / 'access.log'};
    client_body_temp_path {temp / 'body'};
    proxy_temp_path {temp / 'proxy'};
    fastcgi_temp_path {temp / 'fastcgi'};
    uwsgi_temp_path {temp / 'uwsgi'};
    scgi_temp_path {temp / 'scgi'};
    server {{
        listen 127.0.0.1:{self.port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {location}
    }}
}}
""")

    def start(self, timeout=10):
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise RuntimeError("nginx is missing: run scripts/setup.sh --dev")
        command = [binary, "-p", str(self.directory), "-c", str(self.config), "-e", str(self.log_path)]
        self.launch(command, lambda: accepts_tcp(self.port), f"nginx on port {self.port}", timeout)
        return self

    def url(self, path="/"):
        return f"https://127.0.0.1:{self.port}{path}"

    def ws_url(self, slug):
        return f"wss://127.0.0.1:{self.port}/ws/listen/{slug}/"

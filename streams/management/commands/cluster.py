"""Run multi-process mode under supervisord: one media owner and N daphne workers on one socket.

The pattern of the Channels deployment docs: supervisord's fcgi-program opens the
listening socket once and hands it to every worker as fd 0 (`manage.py serve --fd 0`),
so the kernel spreads connections over the workers and no proxy sits in between.
supervisord restarts any process that dies. Needs REDIS_URL (./run.sh --workers N sets it).
"""
import os
import shutil
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError



def default_run_dir():
    """Config, socket and logs of a cluster: `.run/` in the data folder (read when the command runs)."""
    return Path(settings.DATA_DIR) / ".run"


def supervisord_config(*, python, manage, workers, host, port, run_dir, log_file):
    """The supervisord.conf text for an owner and `workers` daphne processes on host:port. Each
    process logs to a file of its own beside `log_file` (a rotating log has one writer)."""
    bracketed = f"[{host}]" if ":" in host else host
    log_stem = str(log_file)[:-4] if str(log_file).endswith(".log") else str(log_file)
    return f"""\
[supervisord]
nodaemon=true
logfile={run_dir}/supervisord.log
pidfile={run_dir}/supervisord.pid
childlogdir={run_dir}

[unix_http_server]
file={run_dir}/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{run_dir}/supervisor.sock

[program:media_owner]
command={python} {manage} media_owner
environment=RTC_LOG_FILE="{log_stem}.owner.log"
autorestart=true
startsecs=1
stopsignal=TERM
stopwaitsecs=10
redirect_stderr=true
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0

[fcgi-program:daphne]
socket=tcp://{bracketed}:{port}
command={python} {manage} serve --fd 0 --host {host} --port {port}
numprocs={workers}
process_name=worker-%(process_num)d
environment=RTC_LOG_FILE="{log_stem}.worker-%(process_num)d.log"
autorestart=true
startsecs=1
stopsignal=TERM
stopwaitsecs=10
redirect_stderr=true
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
"""


class Command(BaseCommand):
    help = "Run a media owner and N daphne workers sharing one socket, under supervisord (needs REDIS_URL)."

    def add_arguments(self, parser):
        parser.add_argument("--workers", type=int, default=2, help="daphne worker processes (default 2)")
        parser.add_argument("--host", default=None, help="address to listen on (default: RTC_HOST)")
        parser.add_argument("--port", type=int, default=None, help="port (default: RTC_PORT)")
        parser.add_argument("--run-dir", type=Path, default=None, help="config, socket and logs (default: .run/ in the data folder)")

    def handle(self, *args, workers, host=None, port=None, run_dir=None, **options):
        run_dir = run_dir or default_run_dir()
        if not settings.REDIS_URL:
            raise CommandError("REDIS_URL is not set: workers and the media owner talk through Redis.")
        if workers < 1:
            raise CommandError("--workers must be at least 1.")
        supervisord = shutil.which("supervisord", path=str(Path(sys.executable).parent)) or shutil.which("supervisord")
        if supervisord is None:
            raise CommandError("supervisord is not installed (pip install supervisor; not available on Windows).")
        run_dir.mkdir(parents=True, exist_ok=True)
        config = run_dir / "supervisord.conf"
        config.write_text(supervisord_config(
            python=sys.executable, manage=Path(settings.BASE_DIR) / "manage.py", workers=workers,
            host=host or settings.RTC_HOST, port=port or settings.RTC_PORT, run_dir=run_dir.resolve(),
            log_file=settings.LOGGING["handlers"]["file"]["filename"],
        ))
        self.stdout.write(f"{workers} daphne worker(s) and a media owner under supervisord ({config}); "
                          f"Redis: {settings.REDIS_URL}")
        self.stdout.flush()
        os.execv(supervisord, [supervisord, "-c", str(config)])

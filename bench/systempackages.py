"""Benchmark-only programs from the system's packages, installed when a benchmark first needs
them (apt-get, waiting for another apt's lock): nothing is installed by hand."""
import os
import shutil
import subprocess


def ensure_command(command, package):
    """Install Debian's `package` if `command` is not on the PATH."""
    if shutil.which(command):
        return
    print(f"{command} is not installed: installing it now (apt-get install {package}, "
          f"a benchmark-only dependency)", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    apt = [*sudo, "apt-get", "-o", "DPkg::Lock::Timeout=600"]
    install = [*apt, "install", "-y", "-q", "--no-install-recommends", package]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env).returncode != 0:  # perhaps stale package lists
        subprocess.run([*apt, "update", "-q"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    if not shutil.which(command):
        raise SystemExit(f"{package} was installed but {command} is not on the PATH")

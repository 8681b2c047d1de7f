"""Both cores busy: plain busy loops in processes of their own, at normal priority, as other
programs on a listener's PC (or 250 listeners) would keep them."""
import contextlib
import os
import subprocess
import sys


@contextlib.contextmanager
def cpu_burners(count=None):
    count = count or os.cpu_count()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield burners
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()

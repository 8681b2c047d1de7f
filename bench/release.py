"""The standalone release: build time, zip size, and time from start to serving.

    .venv/bin/python -m bench.release --builds 3 --starts 5

Each build is `python3 scripts/release.py` from the repository root, as a user runs it (the
virtualenv and PyInstaller already set up after the first). Each start runs the unpacked
`rtc-caster serve` with a bare environment until it accepts TCP on 127.0.0.1; the first start
of a fresh data folder migrates and creates the admin login, the others find them.
"""
import argparse
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from tests.rigs.release import ReleaseBuild, ReleaseServer


def spread(values, unit):
    return (f"median {statistics.median(values):.2f} {unit}, min {min(values):.2f}, max {max(values):.2f} "
            f"(n={len(values)})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--starts", type=int, default=5, help="starts of the last build (the first on fresh data)")
    args = parser.parse_args()
    print("command:", shlex.join([".venv/bin/python", "-m", "bench.release", *sys.argv[1:]]))

    build_seconds, sizes = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for number in range(args.builds):
            build = ReleaseBuild(Path(scratch) / f"build{number}").build()
            build_seconds.append(build.build_seconds)
            sizes.append(build.zip_path.stat().st_size / 1e6)
            print(f"build {number + 1}: {build.build_seconds:.1f} s, {build.zip_path.name} {sizes[-1]:.1f} MB")
        first, later = None, []
        for number in range(args.starts):
            server = ReleaseServer(build, Path(scratch) / f"start{number}.out").start()
            server.stop()
            print(f"start {number + 1}: serving after {server.seconds_to_serve:.2f} s")
            if number == 0:
                first = server.seconds_to_serve
            else:
                later.append(server.seconds_to_serve)
    print(f"build: {spread(build_seconds, 's')}")
    print(f"zip: {spread(sizes, 'MB')}")
    print(f"first start (fresh data): {first:.2f} s; later starts: {spread(later, 's') if later else '-'}")


if __name__ == "__main__":
    main()

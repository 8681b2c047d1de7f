"""Every RTC_* variable the code reads is documented, and every documented one is read.

Read: a string literal "RTC_..." passed as the first argument of a call (the env helpers of
rtccaster_site/env.py, secret_key_from, environ.get) in the app, the settings and the scripts.
Documented: named in README.md or docs/*.md."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READ = re.compile(r"""\(\s*["'](RTC_[A-Z0-9_]+)["']""")
NAMED = re.compile(r"\bRTC_[A-Z0-9_]+\b")


def read_by_code():
    names = set()
    for folder in ("streams", "rtccaster_site", "scripts", "tests/rigs"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(READ.findall(path.read_text()))
    return names


def documented():
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return set().union(*(NAMED.findall(path.read_text()) for path in texts))


def test_every_variable_the_code_reads_is_documented():
    assert sorted(read_by_code() - documented()) == []


def test_every_documented_variable_is_read_by_the_code():
    assert sorted(documented() - read_by_code()) == []


def test_the_scan_finds_what_settings_reads():
    # If the pattern stopped matching, both tests above would pass on nothing.
    assert {"RTC_PORT", "RTC_SECRET_KEY", "RTC_DATA_DIR", "RTC_OPUS_LIBRARY"} <= read_by_code()

"""PyInstaller runtime hook: libopus is looked up by name (ctypes.util.find_library("opus") in
opuslib_next); in the release that name means the copy bundled beside the code, not whatever
the target machine may or may not have installed."""
import ctypes.util
import glob
import os
import sys

_bundled = sorted(glob.glob(os.path.join(sys._MEIPASS, "libopus*")) + glob.glob(os.path.join(sys._MEIPASS, "opus.dll")))
_find_library = ctypes.util.find_library


def _find_bundled_opus_first(name):
    if name == "opus" and _bundled:
        return _bundled[0]
    return _find_library(name)


ctypes.util.find_library = _find_bundled_opus_first

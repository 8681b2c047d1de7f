"""A fault injected into a stream: the real sine source, made to fail on the frame numbers given."""
from streams.audio.sources import SineSource


class FailingSource:
    def __init__(self, frequencies, fail_on=()):
        self._sine = SineSource(frequencies)
        self._fail_on = fail_on
        self._frames = 0

    async def next_frame(self):
        self._frames += 1
        if self._frames in self._fail_on:
            raise RuntimeError(f"injected fault at frame {self._frames}")
        return await self._sine.next_frame()

    def close(self):
        self._sine.close()

"""The inference thread of the node: the newest frame only, at most ``max_rate_hz``, every failure counted.

The subscription callback only drops the message into a one-slot mailbox (:class:`LatestFrameSlot`);
this thread takes the newest frame and hands it to ``process``. A slow engine therefore drops
frames (counted as ``newest_frame``) rather than queueing them, and latency stays bounded. A frame
that fails is counted by cause and reported in one line; the thread goes on.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from ..engines import EngineError
from ..image_codec import ImageDecodeError
from ..latest_frame import LatestFrameSlot
from .frame_drops import FrameDrops
from .worker_stage import WorkerStage


class FrameWorker:
    def __init__(self, process: Callable[[object, float], None], drops: FrameDrops,
                 report_error: Callable[[str], None], source: str, max_rate_hz: Callable[[], float],
                 running: Callable[[], bool] = lambda: True):
        """``process(msg, received)`` handles one frame; ``max_rate_hz()`` is read per frame (0: no cap);
        ``running()`` false (rclpy shut down) ends the thread; ``source`` names the input in errors."""
        self.slot = LatestFrameSlot()
        self.stage = WorkerStage()  # which stage a frame is in: diagnostics name a stuck one
        self._process, self._drops, self._report_error = process, drops, report_error
        self._source, self._max_rate_hz, self._running = source, max_rate_hz, running
        self._thread = threading.Thread(target=self._loop, name="openpixel-inference", daemon=True)
        self._thread.start()

    def offer(self, item) -> None:
        """Executor thread: the newest frame replaces a waiting one (counted by the slot)."""
        self.slot.put(item)

    def close(self, timeout: float = 10.0) -> None:
        self.slot.close()
        self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        last_start = 0.0
        while self._running() and not self.slot.closed:
            item = self.slot.take(timeout=0.5)
            if item is None:
                continue
            max_rate_hz = self._max_rate_hz()
            if max_rate_hz and time.monotonic() - last_start < 1.0 / max_rate_hz:
                self._drops.add("rate_limit")
                continue  # rate cap: this frame is skipped, the next one is waited for
            last_start = time.monotonic()
            try:
                self._process(*item)
            except (ImageDecodeError, ValueError) as exc:
                self._drops.add("decode_error")
                self._report_error(f"dropped frame from {self._source}: {exc}")
            except EngineError as exc:
                self._drops.add("engine_error")
                self._report_error(f"inference failed: {exc}")
            except Exception as exc:  # keep the node alive; the message says what happened
                if not self._running():
                    break
                self._drops.add("engine_error")
                self._report_error(f"unexpected error on frame: {type(exc).__name__}: {exc}")
            finally:
                self.stage.idle()

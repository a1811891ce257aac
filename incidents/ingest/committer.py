"""Group commit: concurrent requests share one transaction, and none is answered before it.

One writer per process takes whatever requests are waiting, writes them in one
transaction and wakes each request with its own result. Under light load a batch is a
single request and nothing waits for a timer; under heavy load batches grow and the
commit cost (one disk flush) is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Engine

from incidents.config import IngestSettings
from incidents.db import utcnow
from incidents.exceptions import Unavailable
from incidents.ingest.store import Incoming, WriteResult, write_batch

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Waiting:
    item: Incoming
    future: asyncio.Future[WriteResult]


class IngestCommitter:
    """Batches writes from concurrent requests into shared transactions."""

    def __init__(
        self,
        engine: Engine,
        settings: IngestSettings,
        on_committed: Callable[[list[Incoming], list[WriteResult]], None] | None = None,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._on_committed = on_committed
        self._queue: asyncio.Queue[_Waiting] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
        self.pending = 0

    async def start(self) -> None:
        """Start the writer task on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="ingest-committer")

    async def stop(self) -> None:
        """Finish the requests already queued, then stop."""
        if self._queue is not None:
            while not self._queue.empty() and self._task is not None and not self._task.done():
                await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, item: Incoming) -> WriteResult:
        """Queue one request's write and wait until it is committed."""
        if self._queue is None:
            raise Unavailable("the ingest writer is not running", retry_after=5)
        if self.pending >= self._settings.max_pending_requests:
            raise Unavailable("too many alerts waiting to be written; retry shortly", retry_after=2)
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self.pending += 1
        self._queue.put_nowait(_Waiting(item, future))
        try:
            return await asyncio.wait_for(
                asyncio.shield(future), timeout=self._settings.commit_timeout_seconds
            )
        except TimeoutError:
            # The write may still commit; a retry of the same body counts once.
            raise Unavailable(
                "the database did not confirm the write in time", retry_after=5
            ) from None

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self._settings.max_batch_requests and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await loop.run_in_executor(self._executor, self._write, batch)
            except Exception:
                log.exception("ingest write failed for %d request(s)", len(batch))
                results = [None] * len(batch)
            finally:
                self.pending -= len(batch)
            for waiting, result in zip(batch, results, strict=True):
                if waiting.future.done():
                    continue
                if isinstance(result, WriteResult):
                    waiting.future.set_result(result)
                else:
                    waiting.future.set_exception(
                        Unavailable(
                            "the alerts could not be stored; nothing was written, retry",
                            retry_after=5,
                        )
                    )

    def _write(self, batch: list[_Waiting]) -> list[WriteResult | None]:
        items = [w.item for w in batch]
        try:
            results: list[WriteResult | None] = list(self._write_items(items))
        except Exception:
            if len(items) == 1:
                log.exception("ingest write failed")
                return [None]
            # One bad request must not fail the others: write each on its own.
            log.warning("batched ingest write failed; retrying %d requests singly", len(items))
            results = []
            for item in items:
                try:
                    results.extend(self._write_items([item]))
                except Exception:
                    log.exception("ingest write failed (request %s)", item.request_id)
                    results.append(None)
        return results

    def _write_items(self, items: list[Incoming]) -> list[WriteResult]:
        with self._engine.begin() as conn:
            results = write_batch(conn, items, utcnow(), self._settings.duplicate_window_seconds)
        if self._on_committed is not None:
            try:
                self._on_committed(items, results)
            except Exception:
                log.exception("post-commit hook failed; the outbox sweeper will catch up")
        return results

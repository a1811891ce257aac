"""Reading a request body: a size limit, Content-Encoding, and a client that goes away."""

from __future__ import annotations

import io
import logging
import zlib

from fastapi import Request
from starlette.requests import ClientDisconnect

from incidents.exceptions import BadRequest, ClientGone, PayloadTooLarge, UnsupportedMediaType

log = logging.getLogger(__name__)


def _encoding(request: Request, allow_gzip: bool) -> str | None:
    """The body's coding: None, or "gzip"; anything else is refused with a hint."""
    header = request.headers.get("content-encoding")
    if header is None:
        return None
    codings = [c.strip().lower() for c in header.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if allow_gzip and codings in (["gzip"], ["x-gzip"]):
        return "gzip"
    accepted = "gzip or none" if allow_gzip else "none"
    raise UnsupportedMediaType(
        f"Content-Encoding {header!r} is not supported here (accepted: {accepted}); "
        "send the body uncompressed" + (" or compressed with gzip" if allow_gzip else ""),
        field="Content-Encoding",
    )


class _Gunzip:
    """Streaming gzip decoding that stops at `limit` decoded bytes (a bomb gets 413)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._out = io.BytesIO()
        self._zlib = zlib.decompressobj(wbits=31)

    def _emit(self, data: bytes) -> None:
        if self._out.tell() + len(data) > self._limit:
            raise PayloadTooLarge(
                f"decompressed body is over the limit of {self._limit} bytes", field="body"
            )
        self._out.write(data)

    def feed(self, data: bytes) -> None:
        """Decode one chunk of the compressed body."""
        try:
            while data:
                if self._zlib.eof:
                    # Concatenated gzip members form one body (RFC 1952).
                    self._zlib = zlib.decompressobj(wbits=31)
                room = self._limit - self._out.tell() + 1
                self._emit(self._zlib.decompress(data, room))
                data = self._zlib.unconsumed_tail or (
                    self._zlib.unused_data if self._zlib.eof else b""
                )
        except zlib.error as exc:
            raise BadRequest(f"body is not valid gzip: {exc}", field="body") from None

    def result(self) -> bytes:
        """The decoded body, once the compressed one has ended."""
        try:
            self._emit(self._zlib.flush())
        except zlib.error as exc:
            raise BadRequest(f"body is not valid gzip: {exc}", field="body") from None
        if not self._zlib.eof:
            raise BadRequest("body is not valid gzip: the stream is truncated", field="body")
        return self._out.getvalue()


async def read_limited(request: Request, limit: int, *, allow_gzip: bool = False) -> bytes:
    """The request body, refused with 413 once it passes `limit` bytes (decoded or not).

    The chunks go into one growing buffer whose bytes are handed over without a copy
    (BytesIO.getvalue), so a body of N bytes costs about N bytes, not twice that.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"body of {declared} bytes is over the limit of {limit} bytes", field="body"
        )
    gunzip = _Gunzip(limit) if _encoding(request, allow_gzip) == "gzip" else None
    first = b""
    buffer: io.BytesIO | None = None
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body is over the limit of {limit} bytes", field="body")
            if gunzip is not None:
                gunzip.feed(chunk)
            elif not first:
                first = chunk
            else:
                if buffer is None:
                    buffer = io.BytesIO()
                    buffer.write(first)
                buffer.write(chunk)
    except ClientDisconnect:
        log.info(
            "client disconnected after %d bytes of the body; nothing stored",
            size,
            extra={"client": request.client.host if request.client else None},
        )
        raise ClientGone("the client closed the connection before the body ended") from None
    if gunzip is not None:
        return gunzip.result()
    return buffer.getvalue() if buffer is not None else first

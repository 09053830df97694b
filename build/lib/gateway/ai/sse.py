"""Incremental Server-Sent Events decoder (WHATWG rules) that keeps every frame's exact bytes.

The gateway sits between an upstream's event stream and the client. It must read the events (to
meter them) yet forward the bytes unchanged, or drop one frame (OpenAI's injected usage chunk). So
the decoder cuts the byte stream into *frames* — everything up to and including the blank line that
ends an event — and reports each frame with its parsed fields and its `raw` bytes. Concatenating the
`raw` of every frame, then `tail`, gives back the input exactly.

Parsing follows https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation:
lines end in CRLF, LF or CR; one leading UTF-8 BOM is skipped; `:` starts a comment; a field's value
loses one leading space; `data` lines are joined with LF; `id` containing NUL is ignored; `retry` is
taken only when all ASCII digits; a blank line dispatches the event unless no `data` line was seen.
At end of stream an unterminated event is discarded, as the spec says — its bytes stay in `tail`.

A frame the spec does not dispatch (a `: keep-alive` comment, an `id:`-only block) is still reported,
with `dispatched=False`, so its bytes reach the client without waiting for the next event.
"""

from dataclasses import dataclass

FRAME_BYTES_MAX_DEFAULT = 1 << 20  # 1 MiB: far above any real chunk, small enough to bound memory.
# Longer digit strings are no sensible delay and would trip Python's int-conversion limit.
_RETRY_DIGITS_MAX = 15
_BOM = b"\xef\xbb\xbf"


class SseFrameTooLarge(ValueError):
    """One frame grew past the decoder's byte limit; the stream cannot be metered safely."""

    def __init__(self, frame_bytes_max: int) -> None:
        super().__init__(f"an SSE frame exceeded {frame_bytes_max} bytes")
        self.frame_bytes_max = frame_bytes_max


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One frame: the parsed event and the exact bytes it arrived as (terminating blank line included)."""

    raw: bytes
    event: str | None  # the `event:` field; None when absent or empty (the spec's type "message")
    data: str  # `data:` lines joined with LF; "" when the frame had none
    id: str | None  # the spec's last event ID after this frame (it persists); None while never set
    retry_ms: int | None  # a valid `retry:` field in this frame, else None
    dispatched: bool  # True when the spec dispatches this frame as an event (it had a data line)


class SseDecoder:
    """Feed bytes as they arrive, get the frames they complete; `close()` at end of stream.

    Deterministic whatever the chunking: a CR at the very end of a chunk may be the first half of a
    CRLF, so the line it ends is held back until the next byte (or `close()`) tells. After raising
    `SseFrameTooLarge` the decoder is unusable.
    """

    def __init__(self, frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT) -> None:
        if frame_bytes_max <= 0:
            raise ValueError("frame_bytes_max must be positive")
        self.frame_bytes_max = frame_bytes_max
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None  # the reconnection time last set by the stream
        self.tail = b""  # after close(): the bytes of a discarded unterminated event
        self._buffer = bytearray()  # the current frame's bytes, then whatever follows unparsed
        self._scan = 0  # bytes of _buffer already split into lines of the current frame
        self._searched = 0  # no line end lies in _buffer[_scan:_searched]
        self._at_stream_start = True
        self._closed = False
        self._event_type = ""
        self._data_lines: list[str] = []
        self._frame_retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The frames completed by this chunk, in order."""
        if self._closed:
            raise RuntimeError("SseDecoder.feed after close")
        self._buffer += chunk
        return self._drain(final=False)

    def close(self) -> list[SseEvent]:
        """End of stream: frames completed by a final CR; an unterminated event goes to `tail`."""
        if self._closed:
            return []
        frames = self._drain(final=True)
        self.tail = bytes(self._buffer)
        self._buffer.clear()
        self._closed = True
        return frames

    def _drain(self, *, final: bool) -> list[SseEvent]:
        frames: list[SseEvent] = []
        buffer = self._buffer
        if self._at_stream_start:
            if not final and len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                return frames  # maybe a BOM still arriving
            if buffer.startswith(_BOM):
                self._scan = self._searched = len(_BOM)  # skipped by the parser, kept in `raw`
            self._at_stream_start = False
        frame_start = 0
        start = max(self._scan, self._searched)
        # Each search runs again only once consumed, so a feed scans its bytes once per kind of line
        # end, whatever the mix (a stream may use CR alone and never LF, or the reverse).
        next_lf = buffer.find(b"\n", start)
        next_cr = buffer.find(b"\r", start)
        while True:
            if -1 < next_lf < start:
                next_lf = buffer.find(b"\n", start)
            if -1 < next_cr < start:
                next_cr = buffer.find(b"\r", start)
            if next_cr == -1 or -1 < next_lf < next_cr:
                if next_lf == -1:
                    self._searched = len(buffer)
                    break
                line_end, start = next_lf, next_lf + 1
            elif next_cr + 1 < len(buffer):
                line_end, start = next_cr, next_cr + (2 if buffer[next_cr + 1] == 0x0A else 1)
            elif final:
                line_end, start = next_cr, next_cr + 1
            else:
                self._searched = next_cr  # a CR that may be half of a CRLF: wait for the next byte
                break
            line = buffer[self._scan:line_end]
            self._scan = start
            if line:
                self._parse_line(line)
                continue
            if self._scan - frame_start > self.frame_bytes_max:
                raise SseFrameTooLarge(self.frame_bytes_max)
            frames.append(self._finish_frame(bytes(buffer[frame_start:self._scan])))
            frame_start = self._scan
        if len(buffer) - frame_start > self.frame_bytes_max:
            raise SseFrameTooLarge(self.frame_bytes_max)
        if frame_start:
            del buffer[:frame_start]
            self._scan -= frame_start
            self._searched -= frame_start
        return frames

    def _parse_line(self, line: bytearray) -> None:
        text = line.decode("utf-8", "replace")
        if text[0] == ":":
            return
        name, colon, value = text.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data_lines.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if 0 < len(value) <= _RETRY_DIGITS_MAX and value.isascii() and value.isdigit():
                self.retry_ms = self._frame_retry_ms = int(value)

    def _finish_frame(self, raw: bytes) -> SseEvent:
        frame = SseEvent(
            raw=raw,
            event=self._event_type or None,
            data="\n".join(self._data_lines),
            id=self.last_event_id,
            retry_ms=self._frame_retry_ms,
            dispatched=bool(self._data_lines),
        )
        self._event_type = ""
        self._data_lines = []
        self._frame_retry_ms = None
        return frame

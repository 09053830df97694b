"""Table and property tests for gateway.ai.sse: WHATWG event-stream parsing with exact frame bytes."""

import re

import pytest
from hypothesis import given, settings, strategies as st

from gateway.ai.sse import SseDecoder, SseEvent, SseFrameTooLarge


def decode_all(chunks: list[bytes], **options) -> tuple[list[SseEvent], SseDecoder]:
    decoder = SseDecoder(**options)
    frames = [frame for chunk in chunks for frame in decoder.feed(chunk)]
    frames += decoder.close()
    return frames, decoder


def dispatched(stream: bytes) -> list[tuple[str | None, str]]:
    frames, _ = decode_all([stream])
    return [(frame.event, frame.data) for frame in frames if frame.dispatched]


def reference_events(stream: bytes) -> list[tuple[str | None, str, str | None]]:
    """The spec's algorithm stated directly over the whole stream, to check the incremental decoder."""
    text = stream.decode("utf-8", "replace")
    text = text.removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)
    lines.pop()  # the text after the last line end is not a line (yet)
    events, event_type, data, last_id = [], "", None, None
    for line in lines:
        if line == "":
            if data is not None:
                events.append((event_type or None, data, last_id))
            event_type, data = "", None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data = value if data is None else data + "\n" + value
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            last_id = value
    return events


# ---------- table: the spec's rules, one per row ----------

SPEC_CASES = [
    ("LF line ends", b"data: a\n\n", [(None, "a")]),
    ("CRLF line ends", b"data: a\r\n\r\n", [(None, "a")]),
    ("CR line ends", b"data: a\r\r", [(None, "a")]),
    ("mixed line ends", b"event: x\r\ndata: a\rdata: b\n\n", [("x", "a\nb")]),
    ("multi-line data joined with LF", b"data: one\ndata: two\ndata: three\n\n", [(None, "one\ntwo\nthree")]),
    ("only one leading space stripped", b"data:  two spaces\n\n", [(None, " two spaces")]),
    ("no space after the colon", b"data:tight\n\n", [(None, "tight")]),
    ("a bare field name is an empty value", b"data\n\n", [(None, "")]),
    ("empty data lines keep their newlines", b"data\ndata\n\n", [(None, "\n")]),
    ("comment lines are ignored", b": keep-alive\ndata: a\n: more\n\n", [(None, "a")]),
    ("a comment-only frame dispatches nothing", b": ping\n\n", []),
    ("event without data dispatches nothing", b"event: lonely\n\ndata: next\n\n", [(None, "next")]),
    ("event type resets after each frame", b"event: a\ndata: 1\n\ndata: 2\n\n", [("a", "1"), (None, "2")]),
    ("empty event field means message", b"event:\ndata: x\n\n", [(None, "x")]),
    ("unknown fields are ignored", b"foo: bar\ndata: x\n\n", [(None, "x")]),
    ("field names are case-sensitive", b"Data: x\ndata: y\n\n", [(None, "y")]),
    ("colon inside the value is kept", b'data: {"a": "b:c"}\n\n', [(None, '{"a": "b:c"}')]),
    ("a leading BOM is skipped", b"\xef\xbb\xbfdata: x\n\n", [(None, "x")]),
    ("only one BOM is skipped", b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\ndata: y\n\n", [(None, "y")]),
    ("a BOM later is data", b"data: \xef\xbb\xbfx\n\n", [(None, "\ufeffx")]),
    ("an unterminated final event is discarded", b"data: a\n\ndata: b\n", [(None, "a")]),
    ("invalid UTF-8 becomes U+FFFD", b"data: \xff\n\n", [(None, "\ufffd")]),
    ("several blank lines are harmless", b"\n\n\ndata: x\n\n\n", [(None, "x")]),
]


@pytest.mark.parametrize("stream,expected", [(s, e) for _, s, e in SPEC_CASES], ids=[c[0] for c in SPEC_CASES])
def test_spec_rule(stream, expected):
    assert dispatched(stream) == expected


def test_id_persists_across_frames_and_ignores_nul():
    """The last event ID persists until a new id field sets it; an id containing NUL is ignored."""
    frames, decoder = decode_all([b"id: 7\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\nid\ndata: d\n\n"])
    assert [frame.id for frame in frames] == ["7", "7", "7", ""]
    assert decoder.last_event_id == ""


def test_retry_takes_only_ascii_digits():
    """retry: sets the reconnection time only when its value is all ASCII digits."""
    frames, decoder = decode_all([b"retry: 3000\ndata: a\n\nretry: 12a\ndata: b\n\nretry: \xd9\xa3\ndata: c\n\n"])
    assert [frame.retry_ms for frame in frames] == [3000, None, None]
    assert decoder.retry_ms == 3000


def test_retry_with_absurdly_many_digits_is_ignored():
    """A 5000-digit retry value neither raises nor sets anything."""
    frames, decoder = decode_all([b"retry: " + b"9" * 5000 + b"\ndata: a\n\n"])
    assert decoder.retry_ms is None and frames[0].data == "a"


def test_non_dispatched_frames_still_carry_their_bytes():
    """Keep-alive comments come out at once as frames, so they can be forwarded without delay."""
    decoder = SseDecoder()
    frames = decoder.feed(b": OPENROUTER PROCESSING\n\n")
    assert frames == [SseEvent(raw=b": OPENROUTER PROCESSING\n\n", event=None, data="", id=None,
                               retry_ms=None, dispatched=False)]


def test_raw_is_the_exact_frame_bytes():
    """Each frame's raw is its bytes as received, terminating blank line included."""
    stream = b"event: a\r\ndata: 1\r\n\r\n: c\n\ndata:2\r\r"
    frames, decoder = decode_all([stream])
    assert [frame.raw for frame in frames] == [b"event: a\r\ndata: 1\r\n\r\n", b": c\n\n", b"data:2\r\r"]
    assert decoder.tail == b""


def test_discarded_tail_keeps_its_bytes():
    """An unterminated event at end of stream is not dispatched, and its bytes are kept in tail."""
    frames, decoder = decode_all([b"data: a\n\ndata: partial"])
    assert [frame.data for frame in frames] == ["a"]
    assert decoder.tail == b"data: partial"


def test_cr_at_the_end_of_a_chunk_then_lf():
    """A CR ending one chunk and an LF starting the next are one line end, not two."""
    frames, _ = decode_all([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"])
    assert [(frame.data, frame.raw) for frame in frames] == [("a", b"data: a\r\n\r\n"), ("b", b"data: b\r\n\r\n")]


def test_frame_ended_by_a_chunk_final_cr_waits_for_the_next_byte():
    """A frame whose blank line is a chunk-final CR is held until the next byte says CR or CRLF."""
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r\r") == []
    assert [frame.raw for frame in decoder.feed(b"\n")] == [b"data: a\r\r\n"]


def test_close_releases_a_frame_ended_by_a_final_cr():
    """At end of stream a trailing CR is a line end, so the frame it ends is dispatched."""
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r\r") == []
    assert [frame.data for frame in decoder.close()] == ["a"]


def test_bom_split_across_chunks():
    """A BOM arriving one byte at a time is still skipped, and still in raw."""
    frames, _ = decode_all([b"\xef", b"\xbb", b"\xbfdata: x\n\n"])
    assert [(frame.data, frame.raw) for frame in frames] == [("x", b"\xef\xbb\xbfdata: x\n\n")]


def test_multibyte_character_split_across_chunks():
    """A UTF-8 character cut between chunks decodes whole."""
    encoded = "data: привет 👋\n\n".encode()
    frames, _ = decode_all([encoded[:9], encoded[9:19], encoded[19:]])
    assert frames[0].data == "привет 👋"


def test_feed_after_close_is_an_error():
    """A closed decoder refuses more bytes."""
    decoder = SseDecoder()
    decoder.close()
    with pytest.raises(RuntimeError):
        decoder.feed(b"data: x\n\n")


# ---------- table: real provider streams ----------

ANTHROPIC_BASIC = (  # anthropic-sdk-python tests/lib/streaming/fixtures/basic_response.txt (ids shortened)
    b'event: message_start\n'
    b'data: {"type":"message_start","message":{"id":"msg_4QpJ","type":"message","role":"assistant","content":[],'
    b'"model":"claude-3-opus-latest","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":11,"output_tokens":1}}}\n\n'
    b'event: content_block_start\n'
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b'event: ping\n'
    b'data: {"type": "ping"}\n\n'
    b'event: content_block_delta\n'
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}\n\n'
    b'event: message_delta\n'
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"output_tokens":6}}\n\n'
    b'event: message_stop\n'
    b'data: {"type":"message_stop"}'  # the SDK fixture really ends here, with no blank line
)


def test_anthropic_stream_without_final_blank_line_drops_message_stop():
    """The SDK's own fixture lacks the last blank line: per spec message_stop is never dispatched."""
    frames, decoder = decode_all([ANTHROPIC_BASIC])
    assert [frame.event for frame in frames] == [
        "message_start", "content_block_start", "ping", "content_block_delta", "message_delta"]
    assert decoder.tail == b'event: message_stop\ndata: {"type":"message_stop"}'


def test_openai_stream_with_done_sentinel():
    """OpenAI chat streams are data-only frames ending with data: [DONE]."""
    stream = (b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk",'
              b'"choices":[{"index":0,"delta":{"content":"Hi"},'
              b'"finish_reason":null}],"usage":null}\n\ndata: [DONE]\n\n')
    assert [data for _, data in dispatched(stream)][-1] == "[DONE]"


# ---------- limits ----------

def test_a_frame_over_the_limit_raises():
    """A single frame larger than the limit raises SseFrameTooLarge, even when it arrives whole."""
    with pytest.raises(SseFrameTooLarge):
        SseDecoder(frame_bytes_max=64).feed(b"data: " + b"x" * 100 + b"\n\n")


def test_an_unfinished_frame_over_the_limit_raises_before_it_ends():
    """Memory stays bounded: an endless line raises once it passes the limit."""
    decoder = SseDecoder(frame_bytes_max=64)
    decoder.feed(b"data: " + b"x" * 50)
    with pytest.raises(SseFrameTooLarge):
        decoder.feed(b"x" * 50)


def test_the_limit_is_per_frame_not_per_chunk():
    """A chunk holding many small frames is fine even when it is larger than the limit."""
    frames = SseDecoder(frame_bytes_max=64).feed(b"data: small\n\n" * 100)
    assert len(frames) == 100


def test_a_frame_exactly_at_the_limit_passes():
    """The limit is inclusive."""
    frame = b"data: " + b"x" * 56 + b"\n\n"
    assert len(frame) == 64
    assert SseDecoder(frame_bytes_max=64).feed(frame)[0].raw == frame


# ---------- properties ----------

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12)
LINE = st.one_of(
    st.builds(lambda t: "data:" + t, TEXT),
    st.builds(lambda t: "data: " + t, TEXT),
    st.builds(lambda t: "event: " + t, TEXT),
    st.builds(lambda t: ":" + t, TEXT),
    st.builds(lambda t: "id: " + t, TEXT),
    st.builds(lambda d: f"retry: {d}", st.integers(0, 10**6)),
    st.sampled_from(["data", "event", "", "\ufeffdata: x", "unknown: field"]),
)
LINE_END = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def streams(draw) -> bytes:
    """A valid stream: frames of lines with mixed line ends, each ended by LF LF (unambiguous)."""
    bom = draw(st.sampled_from(["", "\ufeff"]))
    frames = draw(st.lists(st.lists(st.tuples(LINE, LINE_END), max_size=5), max_size=6))
    bom = bom if frames else ""  # a lone BOM is an unterminated nothing: it stays in tail
    text = bom + "".join("".join(line + end for line, end in frame) + "\n\n" for frame in frames)
    return text.encode()


@st.composite
def chunkings(draw, stream: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    return [stream[start:end] for start, end in zip(bounds, bounds[1:])]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_chunking_gives_the_same_frames(data):
    """Splitting a stream at arbitrary byte boundaries (inside UTF-8 characters, between CR and LF)
    yields the same frames, and the frames' raw bytes concatenated are the input."""
    stream = data.draw(streams())
    whole, whole_decoder = decode_all([stream])
    chunked, chunked_decoder = decode_all(data.draw(chunkings(stream)))
    assert chunked == whole
    assert b"".join(frame.raw for frame in chunked) == stream
    assert chunked_decoder.tail == whole_decoder.tail == b""


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_decoder_agrees_with_the_spec_reference(data):
    """Any bytes at all, in any chunking: the dispatched events are the spec's, and no byte is lost."""
    stream = data.draw(st.one_of(streams(), st.binary(max_size=80),
                                 st.lists(st.sampled_from([b"data: a", b"\r", b"\n", b"\xef\xbb\xbf", b":", b"\xff"]),
                                          max_size=20).map(b"".join)))
    frames, decoder = decode_all(data.draw(chunkings(stream)))
    assert [(f.event, f.data, f.id) for f in frames if f.dispatched] == reference_events(stream)
    assert b"".join(frame.raw for frame in frames) + decoder.tail == stream

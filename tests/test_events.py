"""Event wire form: round trips, rejection of malformed frames, forward compatibility."""

from __future__ import annotations

import json

import pytest

from aerd.events import SCHEMA_VERSION, EmotionEvent, EventError, StatusEvent, from_frames


def emotion(**kw):
    base = dict(seq=7, ts=1700000000.25, device_id="kitchen", run="0123456789abcdef", start=1.5,
                end=4.5, label="happy", confidence=0.625, probs={"happy": 0.625, "sad": 0.375},
                model="m1", speech=0.8, adapted=True)
    base.update(kw)
    return EmotionEvent(**base)


def status(**kw):
    base = dict(seq=3, ts=12.5, device_id="pi", run="fedcba9876543210", state="running",
                input="overflow", detail="x ü", uptime=99.5, audio_s=98.0, windows=10,
                speech_windows=4, events=3, overflows=2, dropped=160, bad_frames=1, model="m1",
                status_interval_s=2.5)
    base.update(kw)
    return StatusEvent(**base)


@pytest.mark.parametrize("ev", [emotion(), status(), EmotionEvent(seq=0, ts=0.0, device_id=""),
                                StatusEvent(seq=1, ts=2.0, device_id="d")])
def test_round_trip(ev):
    frames = ev.to_frames()
    assert len(frames) == 2 and all(isinstance(f, bytes) for f in frames)
    assert frames[0] == type(ev).topic
    assert json.loads(frames[1])["v"] == SCHEMA_VERSION
    back = from_frames(frames)
    assert type(back) is type(ev) and back == ev
    assert type(ev).from_frames(frames) == ev


def test_topics_are_distinct():
    assert emotion().to_frames()[0] == b"emotion" and status().to_frames()[0] == b"status"


def payload(ev, **changes):
    d = ev.to_dict()
    for k, v in changes.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    return json.dumps(d).encode()


@pytest.mark.parametrize("frames, match", [
    ([b"nope", payload(emotion())], "topic"),
    ([b"emotion"], "frames"),
    ([b"emotion", payload(emotion()), b""], "frames"),
    ([b"emotion", b"{not json"], "JSON"),
    ([b"emotion", b"\xff\xfe\x00"], "JSON"),
    ([b"emotion", b"[1, 2]"], "object"),
    # the protocol is UTF-8 JSON; Python's json.loads(bytes) guessed UTF-16/32 and skipped a
    # BOM, so these passed here though a reader in another language refuses them
    ([b"emotion", payload(emotion()).decode().encode("utf-16")], "JSON.*utf-8"),
    ([b"emotion", payload(emotion()).decode().encode("utf-32-le")], "JSON"),
    ([b"emotion", payload(emotion()).decode().encode("utf-8-sig")], "JSON.*BOM"),
    ([b"emotion", payload(emotion(), v=2)], "version"),
    ([b"emotion", payload(emotion(), v=...)], "version"),
    ([b"status", payload(status(), v="1")], "version"),
    ([b"status", payload(status(), v=True)], "version True"),
    ([b"emotion", payload(emotion(), v=1.0)], "version 1.0"),
    ([b"emotion", payload(emotion(), seq=...)], "seq"),
    ([b"emotion", payload(emotion(), device_id=...)], "device_id"),
    ([b"status", payload(status(), ts=...)], "ts"),
    # not JSON numbers, though Python's json reads them: `aerd listen` would print them back
    # as NaN/Infinity (no JSON reader takes that line) and its --pretty view crashed on them
    ([b"emotion", payload(emotion(), confidence=float("nan"))], "confidence"),
    ([b"emotion", payload(emotion(), probs={"happy": float("nan")})], "probs"),
    ([b"status", payload(status(), ts=float("inf"))], "ts"),
    ([b"emotion", payload(emotion()).replace(b'"start": 1.5', b'"start": -Infinity')], "start"),
    ([b"emotion", payload(emotion()).replace(b'"end": 4.5', b'"end": 1e400')], "end"),
    ([b"status", payload(status(), uptime=10 ** 400)], "uptime"),
])
def test_malformed_frames_raise_event_error(frames, match):
    with pytest.raises(EventError, match=match):
        from_frames(frames)


def test_bad_version_error_is_short():
    with pytest.raises(EventError, match="version") as e:   # (under the 64 KiB)
        from_frames([b"status", payload(status(), v="9" * 60_000)])
    assert len(str(e.value)) < 100


def test_unknown_fields_are_ignored():
    ev = emotion()
    d = ev.to_dict()
    d.update(future_field={"x": [1, 2]}, another=3)
    assert from_frames([b"emotion", json.dumps(d).encode()]) == ev


def test_optional_fields_default_when_absent():
    d = {"v": SCHEMA_VERSION, "seq": 1, "ts": 2.0, "device_id": "d", "label": "sad"}
    ev = from_frames([b"emotion", json.dumps(d).encode()])
    assert ev == EmotionEvent(seq=1, ts=2.0, device_id="d", label="sad")


def test_events_of_an_aerd_before_run_and_status_interval_still_parse():
    """The daemon's run id and status cadence are optional fields (schema 1): an older
    daemon's events, which lack them, parse with run "" and status_interval_s 0 (unknown)."""
    for ev in (emotion(), status()):
        d = ev.to_dict()
        assert d["run"] == ev.run and list(d)[:5] == ["v", "seq", "ts", "device_id", "run"]
        del d["run"]
        d.pop("status_interval_s", None)
        old = from_frames([ev.topic, json.dumps(d).encode()])
        assert old.run == "" and old.seq == ev.seq and old.device_id == ev.device_id
    assert status().to_dict()["status_interval_s"] == 2.5 and old.status_interval_s == 0.0
    with pytest.raises(EventError, match="field 'run' is not of type str"):
        from_frames([b"status", payload(status(), run=7)])


def test_status_payload_on_emotion_topic_is_parsed_as_emotion():
    """The topic decides the type; foreign fields are dropped, not crashed on."""
    ev = from_frames([b"emotion", status().to_frames()[1]])
    assert type(ev) is EmotionEvent and ev.seq == 3 and ev.label == ""


def test_frames_received_without_copying_parse_and_non_bytes_are_event_errors(tmp_path):
    """`recv_multipart(copy=False)` (pyzmq's zero-copy receive) gives zmq.Frame objects:
    from_frames raised TypeError on them; now they parse like bytes, and anything that is
    not a buffer of bytes is an EventError, not some other exception."""
    import zmq

    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        a.bind(f"ipc://{tmp_path}/pair.sock")
        b.connect(f"ipc://{tmp_path}/pair.sock")
        ev = emotion()
        a.send_multipart(ev.to_frames())
        assert b.poll(5000)
        assert from_frames(b.recv_multipart(copy=False)) == ev
    finally:
        a.close(linger=0)
        b.close(linger=0)
        ctx.term()
    frames = ev.to_frames()
    assert from_frames([bytearray(f) for f in frames]) == ev
    for bad in ([f.decode() for f in frames], [None, None], None, 5):
        with pytest.raises(EventError, match="frame"):
            from_frames(bad)


def _strict_text(value):
    """Every string in ``value`` is Unicode text (encodes to UTF-8): no lone surrogate."""
    if isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, dict):
        for k, v in value.items():
            _strict_text(k)
            _strict_text(v)


def test_lone_surrogates_never_reach_the_wire():
    """A file name's bytes that are not UTF-8 are lone surrogates in Python (os.fsdecode):
    the JSON carried them as \\udce9, which strict readers (serde_json) refuse, losing the
    event. They are sent as U+FFFD; real non-BMP text (an emoji) is kept."""
    ev = status(detail="file caf\udce9.flac", device_id="k\U0001F600")
    frames = ev.to_frames()
    data = json.loads(frames[1].decode("ascii"))
    _strict_text(data)
    assert data["detail"] == "file caf\ufffd.flac" and data["device_id"] == "k\U0001F600"
    data = json.loads(emotion(probs={"\udcff": 1.0}, label="\udcff").to_frames()[1])
    _strict_text(data)
    assert data["probs"] == {"\ufffd": 1.0} and data["label"] == "\ufffd"
    assert json.loads(emotion(label="a\\udcffb").to_frames()[1])["label"] == "a\\udcffb"

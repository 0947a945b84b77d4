"""`aerd listen` pieces: the live view and the subscriber against a real PUB socket."""

import io
import threading
import time

import zmq

from aerd.events import EmotionEvent, StatusEvent
from aerd.listen import listen, render_pretty


def _emotion(seq, label="happy"):
    return EmotionEvent(seq=seq, ts=1.0, device_id="d", start=0.0, end=3.0, label=label,
                        confidence=0.7, probs={"happy": 0.7, "sad": 0.3}, model="m@1")


def test_pretty_view_shows_label_and_bars():
    text = render_pretty(_emotion(1))
    assert "HAPPY" in text and "70%" in text
    lines = text.splitlines()
    assert lines[1].strip().startswith("happy") and lines[1].count("#") == 21
    assert lines[2].strip().startswith("sad") and lines[2].count("#") == 9


def test_listen_counts_emotions_ignores_bad_messages_and_times_out(tmp_path):
    ep = f"ipc://{tmp_path}/l.sock"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(ep)
    stop = threading.Event()

    def publish():
        seq = 0
        while not stop.is_set():
            seq += 1
            pub.send_multipart([b"emotion", b"{not json"])
            pub.send_multipart(StatusEvent(seq=seq, ts=1.0, device_id="d").to_frames())
            pub.send_multipart(_emotion(seq).to_frames())
            time.sleep(0.02)

    th = threading.Thread(target=publish)
    th.start()
    try:
        out = io.StringIO()
        assert listen(ep, count=3, timeout=10, topics=["emotion", "status"], out=out, ctx=ctx) == 0
        lines = out.getvalue().splitlines()
        assert sum('"topic": "emotion"' in x for x in lines) == 3
        out2 = io.StringIO()
        assert listen(ep, count=1, timeout=0.5, topics=["nothing"], out=out2, ctx=ctx) == 1
        assert out2.getvalue() == ""
    finally:
        stop.set()
        th.join()
        pub.close()
        ctx.term()

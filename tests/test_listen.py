"""`aerd listen` pieces: the live view and the subscriber against a real PUB socket."""

import io
import json
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


def test_pretty_view_keeps_bars_of_out_of_range_probabilities_in_width():
    """A publisher's probabilities are not checked to lie in 0..1: 1e12 made a bar of 3e13
    characters (MemoryError), -5 a line of 180 dots."""
    ev = EmotionEvent(seq=1, ts=1.0, device_id="d", label="happy", confidence=0.5,
                      probs={"happy": 1e12, "sad": -5.0, "calm": 10 ** 30})
    bars = [line.split()[1] for line in render_pretty(ev).splitlines()[1:]]
    assert bars == ["#" * 30, "#" * 30, "." * 30]


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
        # no --count: --timeout is how long to listen; exit 1 only if no emotion event came
        # (it was 1 always, with "timeout: 25 of any emotion events")
        out3 = io.StringIO()
        assert listen(ep, count=None, timeout=0.5, topics=["emotion", "status"], out=out3,
                      ctx=ctx) == 0
        assert '"topic": "emotion"' in out3.getvalue()
        # status alone: exit 0 if any status came (it was 1 always: no emotion event can come)
        assert listen(ep, count=None, timeout=0.5, topics=["status"], out=io.StringIO(),
                      ctx=ctx) == 0
        assert listen(ep, count=None, timeout=0.5, topics=["nothing"], out=io.StringIO(),
                      ctx=ctx) == 1
    finally:
        stop.set()
        th.join()
        pub.close()
        ctx.term()


def test_count_without_the_emotion_topic_is_refused(tmp_path, capsys):
    """--count counts emotion events: with --topic status alone it waited for events it had
    not subscribed to, for ever or until --timeout (exit 1) while statuses came in."""
    from aerd.cli import main

    argv = ["listen", "--endpoint", f"ipc://{tmp_path}/n.sock", "--topic", "status",
            "--count", "1", "--timeout", "0.3"]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("aerd listen: error: --count") and "--topic" in err[0]


def test_timeout_on_the_status_topic_names_status_events(tmp_path, capsys):
    """--topic status --timeout S with nothing coming: the line names status events (it said
    'timeout: 0 of any emotion events', which that listener had not subscribed to)."""
    from aerd.cli import main

    argv = ["listen", "--endpoint", f"ipc://{tmp_path}/s.sock", "--topic", "status",
            "--timeout", "0.3"]
    assert main(argv) == 1
    assert capsys.readouterr().err == "aerd listen: timeout: 0 of any status events within 0.3 s\n"
    assert main(argv[:3] + ["--timeout", "0.3"]) == 1
    assert capsys.readouterr().err == "aerd listen: timeout: 0 of any emotion events within 0.3 s\n"


def test_seq_gaps_per_device_and_restarts():
    from aerd.listen import Seen, SeqGaps

    g = SeqGaps()
    assert [g.see("a", "r1", s).missed for s in (5, 6, 9, 10)] == [0, 0, 2, 0]
    assert g.see("b", "r1", 1) == Seen() and g.see("b", "r1", 3) == Seen(missed=1)   # own count
    assert g.see("a", "r2", 1) == Seen(restarted=True, previous="r1")   # "a" restarted
    assert g.see("a", "r2", 2) == Seen()


def test_seq_gaps_forget_the_least_recent_device_past_the_bound():
    """A publisher inventing a device_id per message cannot grow the listener's table: past
    the bound the device heard from least recently is forgotten, the others keep counting."""
    from aerd.listen import SeqGaps

    g = SeqGaps(max_devices=3)
    for d in "abc":
        g.see(d, "r", 1)
    assert g.see("a", "r", 2).missed == 0     # "a" is now the most recent
    g.see("d", "r", 1)                        # 4 names: "b" (least recent) is forgotten
    assert len(g._last) == 3
    assert [g.see(d, "r", s).missed for d, s in (("a", 4), ("c", 3), ("d", 3))] == [1, 1, 1]
    assert g.see("b", "r", 5).missed == 0     # forgotten: counted as its first message
    for i in range(10_000):
        g.see(f"x{i}", f"r{i}", 1)
        g.see("x", f"r{i}", 1)                # a run id per message: bounded as well
    assert len(g._last) == 3 and len(g._runs) == 3


def test_listen_skips_malformed_events_and_reports_missed_ones(tmp_path, capsys):
    """Wrong field types, JSON nested 30 000 deep: skipped with a line each, in both output
    modes; a gap in seq (messages ZeroMQ dropped for this subscriber) is reported."""
    ep = f"ipc://{tmp_path}/m.sock"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(ep)
    good = _emotion(1).to_dict()
    bad = [[b"emotion", json.dumps({**good, "confidence": "high"}).encode()],
           [b"emotion", json.dumps({**good, "probs": {"happy": "x"}}).encode()],
           [b"status", json.dumps({**StatusEvent(seq=1, ts=1.0, device_id="d").to_dict(),
                                   "windows": 2.5}).encode()],
           [b"emotion", b"[" * 30_000 + b"]" * 30_000],   # (under the 64 KiB)
           [b"status", b'{"v": 1, "seq": ' + b"9" * 5000 + b"}"],
           # a valid event padded past the 64 KiB every bound aerd socket takes: parsed and
           # printed, however large (50 MB: 0.3 s; 5 million empty lists: 2 s), before
           [b"emotion", json.dumps({**good, "pad": [[]] * 40_000}).encode()]]
    stop = threading.Event()

    def publish():
        seq = 0
        while not stop.is_set():
            for frames in bad:
                pub.send_multipart(frames)
            seq += 3   # two messages of each round "lost"
            pub.send_multipart(_emotion(seq).to_frames())
            time.sleep(0.02)

    th = threading.Thread(target=publish)
    th.start()
    try:
        for pretty in (False, True):
            out = io.StringIO()
            assert listen(ep, count=3, timeout=10, topics=["emotion", "status"], out=out,
                          pretty=pretty, ctx=ctx) == 0
            err = capsys.readouterr().err
            assert "field 'confidence' is not of type float" in err
            assert "field 'probs' is not of type dict[str, float]" in err
            assert "field 'windows' is not of type int" in err
            assert "nested too deep" in err
            assert "Exceeds the limit" in err   # an integer of 5000 digits
            assert "bytes, over 65536" in err
            assert "2 message(s) missed before seq" in err
            assert out.getvalue().count("HAPPY" if pretty else '"topic": "emotion"') == 3
    finally:
        stop.set()
        th.join()
        pub.close()
        ctx.term()


def test_publisher_text_cannot_break_lines_or_the_terminal(tmp_path, capsys):
    """device_id, label and probability names come from the publisher: a newline or an escape
    sequence in them split the stderr gap line in two and reached the terminal raw, and an
    unpaired surrogate (valid JSON: "\\ud800") crashed --pretty with UnicodeEncodeError."""
    ep = f"ipc://{tmp_path}/t.sock"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(ep)
    evil = "kitchen\nFAKE\x1b[2J\ud800"
    stop = threading.Event()

    def publish():
        seq = 0
        while not stop.is_set():
            seq += 2   # one message "lost" before each
            ev = EmotionEvent(seq=seq, ts=1.0, device_id=evil, label="happy\x1b[31m",
                              confidence=0.5, probs={"happy\r": 0.5, "sad\ud800": 0.5})
            # (json.dumps: aerd's own to_frames sends no unpaired surrogate; another might)
            pub.send_multipart([ev.topic, json.dumps(ev.to_dict()).encode()])
            time.sleep(0.02)

    th = threading.Thread(target=publish)
    th.start()
    try:
        raw = io.BytesIO()
        out = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
        assert listen(ep, count=3, timeout=10, topics=["emotion", "status"], out=out,
                      pretty=True, ctx=ctx) == 0
        shown = raw.getvalue().decode("utf-8").replace("\x1b[H\x1b[2J", "")
        assert "\x1b" not in shown and "\r" not in shown
        assert shown.count("\n") == 3 * 3 and "kitchen\\nFAKE\\x1b[2J\\ud800" in shown
        err = capsys.readouterr().err.splitlines()
        assert len(err) >= 2 and all(line.startswith("aerd listen: kitchen\\nFAKE") for line in err)
        # the JSON lines: Unicode text (an unpaired surrogate printed as \ud800 was no JSON
        # text a strict reader of the listener's output takes), the escapes kept as JSON's
        out = io.StringIO()
        assert listen(ep, count=3, timeout=10, topics=["emotion"], out=out, ctx=ctx) == 0
        for line in out.getvalue().splitlines():
            ev = json.loads(line)
            assert ev["device_id"] == "kitchen\nFAKE\x1b[2J\ufffd", ev
            assert ev["probs"] == {"happy\r": 0.5, "sad\ufffd": 0.5}, ev
    finally:
        stop.set()
        th.join()
        pub.close()
        ctx.term()


def test_a_connection_gone_silent_is_replaced(tmp_path):
    """The publisher's host loses power (or a NAT forgets the flow): the old TCP connection
    stays open on the listener's side and delivers nothing. Without heartbeats the listener
    waited on it for ever; with them it reconnects within three intervals."""
    from tcp_blackhole import Blackhole

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)   # (no heartbeats here: only the listener's own may notice)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    hole = Blackhole(port)
    stop = threading.Event()
    out = io.StringIO()
    counts: list[int] = []

    def publish():
        seq = 0
        while not stop.is_set():
            seq += 1
            pub.send_multipart(_emotion(seq).to_frames())
            time.sleep(0.02)

    def cut_after_first_event():
        while not stop.is_set() and '"emotion"' not in out.getvalue():
            time.sleep(0.01)
        hole.cut()
        counts.append(out.getvalue().count('"emotion"'))

    threads = [threading.Thread(target=publish), threading.Thread(target=cut_after_first_event)]
    for th in threads:
        th.start()
    try:
        t0 = time.monotonic()
        rc = listen(hole.endpoint, count=30, timeout=10, topics=["emotion"], out=out,
                    ctx=ctx, heartbeat_s=0.3)
        assert rc == 0, out.getvalue()[-300:]
        assert counts and counts[0] < 30   # most of them came after the cut
        assert time.monotonic() - t0 < 5
    finally:
        stop.set()
        for th in threads:
            th.join()
        hole.close()
        pub.close(linger=0)
        ctx.term()


def test_a_plain_listener_to_another_host_is_warned(tmp_path):
    """Plain text across a network, or nothing at all from a device that uses CURVE (the
    handshake fails and the listener waited in silence): one warning line says which."""
    from e2e_helpers import run

    far = run("listen", "--endpoint", "tcp://192.0.2.1:5556", "--timeout", "0.2", timeout=30)
    assert far.returncode == 1
    assert "is another host and CURVE is off" in far.stderr.splitlines()[0], far.stderr
    near = run("listen", "--endpoint", f"ipc://{tmp_path}/x.sock", "--timeout", "0.2", timeout=30)
    assert near.returncode == 1 and "CURVE" not in near.stderr, near.stderr
    bad = run("listen", "--endpoint", "nonsense", "--timeout", "0.2", timeout=30)
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("aerd listen: error: --endpoint: malformed endpoint "
                                  "'nonsense': expected transport://address"), bad.stderr


def test_pretty_view_on_a_terminal_that_is_not_utf8(tmp_path):
    """`aerd listen --pretty` on a Latin-1 terminal: a device or label name it cannot encode
    (a device_id of 'küche-厨房') ended the listener with a UnicodeEncodeError traceback; it
    is shown escaped, and what Latin-1 has ('ü', 'ö') as it is."""
    import signal

    from e2e_helpers import env, spawn

    ep = f"ipc://{tmp_path}/p.sock"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(ep)
    listener = spawn("listen", "--endpoint", ep, "--pretty", "--count", "3", "--timeout", "20",
                     env={**env(), "PYTHONIOENCODING": "latin-1"}, encoding="latin-1")
    try:
        seq = 0
        while listener.poll() is None and seq < 1000:
            seq += 1
            pub.send_multipart(EmotionEvent(seq=seq, ts=1.0, device_id="küche-厨房",
                                            label="fröhlich", confidence=0.7,
                                            probs={"fröhlich": 0.7, "悲しい": 0.3}).to_frames())
            time.sleep(0.02)
        out, err = listener.communicate(timeout=10)
    finally:
        if listener.poll() is None:
            listener.send_signal(signal.SIGTERM)
            listener.communicate(timeout=10)
        pub.close()
        ctx.term()
    assert listener.returncode == 0, err
    assert out.count("küche-\\u53a8\\u623f") == 3 and out.count("FRÖHLICH") == 3, out[-300:]
    assert out.count("\\u60b2\\u3057\\u3044") == 3 and err == "", err

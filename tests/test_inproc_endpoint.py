"""An inproc:// endpoint on the command line: ZeroMQ's transport between the sockets of one
process, so nothing outside `aerd run` (or `aerd relay`) could ever reach it, and `aerd
listen` could reach nothing. Each ran on, publishing to no one or waiting for ever."""

from __future__ import annotations

import pytest

from e2e_helpers import CLIPS, free_tcp_port, run


@pytest.mark.parametrize("args, needle", [
    (["run", "--input", str(CLIPS[0]), "--fast", "--endpoint", "inproc://events"],
     "aerd run: error: command line: --endpoint must look like tcp://HOST:PORT or ipc://PATH, "
     "got 'inproc://events'"),
    (["run", "--input", str(CLIPS[0]), "--fast", "--connect", "INPROC://relay"],
     "aerd run: error: command line: --connect must look like"),
    (["listen", "--endpoint", "inproc://events", "--timeout", "1"],
     "aerd listen: error: --endpoint inproc://events: inproc:// reaches only sockets of the "
     "same process; give tcp://HOST:PORT or ipc://PATH"),
    (["relay", "--frontend", "inproc://front", "--backend", "tcp://127.0.0.1:{port}"],
     "aerd relay: error: --frontend inproc://front: inproc:// reaches only"),
    (["relay", "--frontend", "tcp://127.0.0.1:{port}", "--backend", "inproc://back"],
     "aerd relay: error: --backend inproc://back: inproc:// reaches only"),
])
def test_an_inproc_endpoint_is_refused(args, needle):
    r = run(*(a.format(port=free_tcp_port()) for a in args), timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(needle), r.stderr

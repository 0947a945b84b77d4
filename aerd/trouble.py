"""Trouble spells: how a source that keeps failing is logged for months without flooding
journald (a microphone lost again and again, a stdin producer that keeps stalling).

A spell is the troubles (losses, stalls) in a row; it ends once the source has worked for
``healthy_s`` since it last recovered. The first ``loud`` troubles of a spell, and the
recoveries from them, are logged at their own level; later ones are debug lines, with one
warning when the spell goes quiet and one info line when it ends. Status events say every
trouble whatever the log does.
"""

from __future__ import annotations

import logging
import time
from typing import Any


class Spell:
    def __init__(self, log: logging.Logger, going_quiet: str, over: str, loud: int = 3,
                 healthy_s: float = 30.0):
        """``going_quiet``: the warning when the spell goes quiet; ``over``: the info line when
        a quiet spell ends, with a ``%d`` for the number of troubles."""
        self._log, self._going_quiet, self._over = log, going_quiet, over
        self.loud, self.healthy_s = loud, healthy_s
        self.count = 0   # troubles in this spell (0: none going on)
        self.since: float | None = None   # when its first trouble came
        self._recovered_at = 0.0

    def trouble(self, msg: str, *args: Any) -> None:
        """One more trouble: a warning while the spell is loud."""
        if self.since is None:
            self.since = time.monotonic()
        self.count += 1
        self.say(logging.WARNING, msg, *args)
        if self.count == self.loud + 1:
            self._log.warning(self._going_quiet)

    def recovered(self, msg: str, *args: Any) -> None:
        """The source works again (or for the first time): an info line while loud."""
        self._recovered_at = time.monotonic()
        self.say(logging.INFO, msg, *args)

    def say(self, level: int, msg: str, *args: Any) -> None:
        self._log.log(logging.DEBUG if self.count > self.loud else level, msg, *args)

    def working(self) -> bool:
        """Call while the source delivers: True once, when this ends the spell (it worked for
        ``healthy_s`` since it last recovered)."""
        if not self.count or time.monotonic() - self._recovered_at < self.healthy_s:
            return False
        if self.count > self.loud:   # the quiet lines said nothing of it
            self._log.info(self._over, self.count)
        self.count, self.since = 0, None
        return True

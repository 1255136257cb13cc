"""The Label tab's presses, handled one at a time per page and in the order they were made.

A clinician labelling from the keyboard presses faster than a busy server answers: the next
key goes out while the last one still shows "processing". Gradio then runs both handlers at
once, each with the session as it was before either (a `gr.State` is read when an event
starts), so a Back pressed right after an answer would go back from the wrong item, and the
two could be stored in either order. Here:

- the browser numbers each press of a page (1, 2, 3, ...) as it happens (`press_js`): the
  number rides on the showing id the press sends back ("<showing>#7"; `split_press`), so the
  endpoints keep their parameters and an API call without a number works as before;
- `PressLine.turn(page, number, state)` lets press n start once press n-1 of the same page
  has ended (or after `wait_s`, should one never arrive), one at a time per page, and hands
  it the session as the last handler of that page left it (`Turn.state`); the handler leaves
  its own with `Turn.leave(state)`. Handlers of other events (Start, a queue row, the switch)
  take a turn without a number, so they too see and leave the newest session.

Nothing here imports Gradio:

    line = PressLine()
    with line.turn(request.session_hash, press_number, state) as turn:
        new_state = handle(turn.state)
        turn.leave(new_state)
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

PRESS_MARK = "#"
WAIT_S = 5.0  # how long a press waits for the one before it (it may have been lost)
KEEP_STATE_S = 120.0  # Gradio's own copy of the session has long caught up by then
FORGET_PAGE_S = 12 * 3600.0


@dataclass
class _Page:
    last: int = 0  # the highest press number handled
    busy: bool = False
    state: Any = None
    state_at: float = 0.0
    touched: float = field(default_factory=time.monotonic)


@dataclass
class Turn:
    """One handler's turn: the newest session of its page, and where it leaves its own."""

    state: Any
    left: list[Any] = field(default_factory=list)

    def leave(self, state: Any) -> None:
        """The session as this handler leaves it (what the page's next handler sees)."""
        self.left[:] = [state]


def press_js(showing_index: int) -> str:
    """Browser code run before a press's handler: the input at `showing_index` (the showing
    id) gets the press's number on this page appended, counted from 1 when the page loads."""
    return f"""
(...args) => {{
  window.__noshowPressCount = (window.__noshowPressCount || 0) + 1;
  args[{showing_index}] = String(args[{showing_index}] || "") + "{PRESS_MARK}" +
    window.__noshowPressCount;
  return args;
}}
"""


def split_press(value: Any) -> tuple[str | None, int | None]:
    """(showing id, press number) from what a press sent: "<showing>#7" from the browser,
    "<showing>" from an API call (no number); None for what is missing."""
    showing, _, number = str(value or "").strip().partition(PRESS_MARK)
    try:
        n = int(number)
    except ValueError:
        n = None
    return showing.strip() or None, n if n is not None and n > 0 else None


class PressLine:
    """Handlers of one page run one at a time, presses in the order they were made."""

    def __init__(self, wait_s: float = WAIT_S, keep_state_s: float = KEEP_STATE_S) -> None:
        self.wait_s = wait_s
        self.keep_state_s = keep_state_s
        self._cond = threading.Condition()
        self._pages: dict[str, _Page] = {}

    @contextlib.contextmanager
    def turn(self, page: str | None, number: int | None, state: Any) -> Iterator[Turn]:
        """Wait for this handler's turn on `page` (its press `number`, if any) and yield a
        `Turn` whose `state` is the page's newest session (`state` when none is kept)."""
        if not page:  # no browser session (a bare API call): nothing to order against
            yield Turn(state)
            return
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            if len(self._pages) > 1000:
                self._forget_old()
            entry = self._pages.setdefault(page, _Page())
            while entry.busy or (number is not None and number > entry.last + 1):
                left = deadline - time.monotonic()
                if left <= 0:
                    break  # a press before this one never came: go on rather than hang
                self._cond.wait(left)
            entry.busy = True
            if time.monotonic() - entry.state_at > self.keep_state_s:
                entry.state = None
            turn = Turn(state if entry.state is None else entry.state)
        try:
            yield turn
        finally:
            with self._cond:
                entry.busy = False
                entry.touched = time.monotonic()
                if number is not None:
                    entry.last = max(entry.last, number)
                if turn.left:
                    entry.state, entry.state_at = turn.left[0], entry.touched
                self._cond.notify_all()

    def _forget_old(self) -> None:
        now = time.monotonic()
        for page, entry in list(self._pages.items()):
            if not entry.busy and now - entry.touched > FORGET_PAGE_S:
                del self._pages[page]

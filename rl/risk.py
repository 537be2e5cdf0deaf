"""Pre-trade risk checks and the kill switch of the live trader (`rl.live`).

Every order the policy wants passes `check` before it is signed; the first rule it breaks is recorded in
the ledger as `blocked:<rule>` and nothing is sent. The rules, in the order they are checked:

- `kill_switch`: the switch has tripped (no new order after that, whatever the policy says);
- `max_notional`: the order's quote value at the pool's mid is above the per-trade limit;
- `max_position`: a buy would take the base held (the larger of the ledger's book and the chain's balance
  at the head, so a swap the book missed still counts) plus what is in flight above the limit;
- `max_slippage`: the order's price impact against the pool (fee excluded) is above the limit; the
  same limit also bounds the swap on chain (amount-out minimum / amount-in maximum), so a price that
  moves between the quote and the block cannot fill worse either;
- `daily_loss`: the book has lost more than the limit since the first block of its UTC day: no more buys
  that day (sells still go, they only reduce the position that lost).

The kill switch is a file (checked at every block) or a signal (SIGINT, SIGTERM, SIGUSR1 set a flag): the
loop stops deciding at the next block, but keeps following the transactions already sent. A second SIGINT
(Ctrl-C twice) interrupts at once, for when the node itself is gone.
"""

from __future__ import annotations

import math
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

from chainlake.errors import ConfigError

RULES = ("kill_switch", "max_notional", "max_position", "max_slippage", "daily_loss")
KILL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


@dataclass(frozen=True)
class RiskLimits:
    """Limits in the pool's units: base for positions, quote for values; None switches a rule off.

    `max_slippage` is a fraction (0.01 = 1 %) and always applies: it also sets the on-chain bounds.
    """

    max_position: float | None = None
    max_notional: float | None = None
    max_slippage: float = 0.01
    daily_loss: float | None = None

    def __post_init__(self):
        for name in ("max_position", "max_notional", "daily_loss"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"risk limit {name} must be a number >= 0, got {value!r}")
        if not (0 <= self.max_slippage < 1):
            raise ConfigError(f"max_slippage must be a fraction in [0, 1), got {self.max_slippage!r}")


@dataclass(frozen=True)
class Order:
    """An order as the checks see it: signed base quantity (+ buy), its quote value at mid, its price impact."""

    base: float
    notional: float
    impact: float


@dataclass(frozen=True)
class RiskState:
    """The book when the order is checked: base held (the larger of book and chain) or in flight, and the P&L
    since the day started."""

    position: float
    day_pnl: float
    killed: bool = False


def check(order: Order, state: RiskState, limits: RiskLimits) -> str | None:
    """The first rule `order` breaks (a name from RULES), or None when it may be sent."""
    if state.killed:
        return "kill_switch"
    if limits.max_notional is not None and abs(order.notional) > limits.max_notional:
        return "max_notional"
    if limits.max_position is not None and order.base > 0 and state.position + order.base > limits.max_position:
        return "max_position"
    if order.impact > limits.max_slippage:
        return "max_slippage"
    if limits.daily_loss is not None and order.base > 0 and state.day_pnl < -limits.daily_loss:
        return "daily_loss"  # buys only: a sell reduces the exposure that lost (there is no shorting)
    return None


@dataclass
class KillSwitch:
    """Trips when `path` exists (checked by `tripped()`) or on one of `signals` once `install`ed.

    Signal handlers only set a flag (safe at any point of the loop); `uninstall` restores the previous
    handlers. Outside the main thread signals cannot be installed and only the file and `trip` work.
    """

    path: Path | None = None
    signals: tuple[int, ...] = KILL_SIGNALS
    reason: str | None = None
    _event: threading.Event = field(default_factory=threading.Event, repr=False)
    _previous: dict = field(default_factory=dict, repr=False)

    def trip(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def tripped(self) -> bool:
        if not self._event.is_set() and self.path is not None and Path(self.path).exists():
            self.trip(f"kill file {self.path}")
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking at once when a signal trips the switch; whether it is tripped."""
        return self._event.wait(seconds) or self.tripped()

    def install(self) -> "KillSwitch":
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum, frame) -> None:
        if self._event.is_set() and signum == signal.SIGINT:  # a second Ctrl-C: the user wants out now
            raise KeyboardInterrupt
        self.trip(f"signal {signal.Signals(signum).name}")

    def __enter__(self) -> "KillSwitch":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()

"""Tracked scripts and interfaces: rise/fall hysteresis and keepalived's weight rules. Sans-IO.

keepalived semantics:
  * a script result counts as OK after `rise` consecutive successes and KO after `fall`
    consecutive failures; before its first run it is unknown and the first result decides
    at once (keepalived's `result = rise - 1` start: "one success is enough"), and the
    instance waits in INIT for it (keepalived: FAULT (init)); `init_fail` is not supported;
  * weight 0: KO puts the instance in FAULT;
  * weight > 0: the weight is added to the priority while OK;
  * weight < 0: the weight is subtracted from the priority while KO.
The shell runs the checks (script exit status, interface operstate) and feeds results here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Hysteresis:
    """OK/KO with rise/fall counts: `record` returns the new state when it changes."""

    rise: int = 1
    fall: int = 1
    ok: bool | None = True   # None: not run yet — the first result decides at once
    _streak: int = 0

    def record(self, success: bool) -> bool | None:
        if self.ok is None:
            self.ok = success
            return success
        if success == self.ok:
            self._streak = 0
            return None
        self._streak += 1
        if self._streak >= (self.rise if success else self.fall):
            self.ok, self._streak = success, 0
            return success
        return None


@dataclass
class Tracked:
    """One tracked object as one instance sees it (its weight may override the script's)."""

    name: str
    weight: int
    state: Hysteresis

    @property
    def contribution(self) -> int:
        if self.weight > 0 and self.state.ok:
            return self.weight
        if self.weight < 0 and self.state.ok is False:
            return self.weight
        return 0

    @property
    def faulted(self) -> bool:
        return self.weight == 0 and self.state.ok is False


def total_weight(items: list[Tracked]) -> int:
    return sum(t.contribution for t in items)

"""Named failpoints: crash and fault injection points in the commit path (issue 9).

A call site ``failpoint("storage.commit.before_commit")`` does nothing, at the cost of one
dict lookup, unless a test armed that name. Arming (etcd's gofail, FoundationDB's BUGGIFY):

* from the environment, read once at import::

      CARECHAIN_FAILPOINTS="storage.commit.before_commit=kill@3,node.commit.before_store=raise-eio"

* programmatically: ``arm("name", "kill@2")`` or ``arm("name", callable)``; ``disarm(name)``,
  ``disarm_all()``; ``armed(name)``; ``hits(name)`` counts the hits since it was armed.

Actions: ``kill`` (``os.kill(getpid(), SIGKILL)``: the process dies on the spot, nothing is
flushed), ``raise-eio`` / ``raise-enospc`` (``OSError`` with that errno), ``off``; an optional
``@N`` fires on the N-th hit only (``kill@3``: the third time the point is reached), earlier
and later hits pass. A callable action runs on every hit (the test decides what to do).

Invariants: never imported by the deterministic core (``carechain.ledger``, ``contracts``,
``merkle``, ``encoding``; ``tests/unit/test_failpoints.py`` checks it); imports nothing from
carechain; an unarmed point never changes behaviour. The names of the points are in
:data:`POINTS` (docs/RELIABILITY.md says where each one sits).
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

ENV = "CARECHAIN_FAILPOINTS"
"""Environment variable read once at import: ``name=action[@N][,name=action[@N]...]``."""

POINTS: tuple[str, ...] = (
    "node.commit.before_store",
    "node.commit.key_rotation",
    "storage.commit.before_block",
    "storage.commit.after_block_row",
    "storage.commit.during_txs",
    "storage.commit.during_index",
    "storage.commit.during_merkle",
    "storage.commit.during_state",
    "storage.commit.before_commit",
    "storage.commit.after_commit",
    "node.ack.after_commit",
)
"""Every failpoint of the commit path, in the order a block commit reaches them
(``node.commit.key_rotation`` only on blocks holding an ``identity.rotate_key@1``)."""

ACTIONS = ("kill", "raise-eio", "raise-enospc", "off")
"""Named actions (plus any callable given to :func:`arm`)."""

Action = Callable[[], None]


@dataclass(slots=True)
class _Armed:
    """One armed point."""

    name: str
    """The point's name."""
    action: Action
    """What a firing hit does."""
    nth: int | None = None
    """Fire on this hit only (1-based); None: on every hit."""
    hits: int = 0
    """Hits since it was armed."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Serialises the hit count (points are reached from several threads)."""


_ARMED: dict[str, _Armed] = {}


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _raiser(code: int) -> Action:
    def fire() -> None:
        raise OSError(code, f"failpoint: injected {errno.errorcode[code]}")

    return fire


def _off() -> None:
    return None


_NAMED: dict[str, Action] = {
    "kill": _kill,
    "raise-eio": _raiser(errno.EIO),
    "raise-enospc": _raiser(errno.ENOSPC),
    "off": _off,
}


def parse_action(text: str) -> tuple[Action, int | None]:
    """``"kill@3"`` -> (kill, 3); ``"raise-eio"`` -> (raise EIO, None). ValueError if bad."""
    name, at, count = text.strip().partition("@")
    action = _NAMED.get(name)
    if action is None:
        raise ValueError(f"unknown failpoint action {name!r}; known: {', '.join(ACTIONS)}")
    if not at:
        return action, None
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"failpoint hit count must be a positive integer, got {count!r}")
    return action, int(count)


def arm(name: str, action: str | Action, nth: int | None = None) -> None:
    """Arm ``name`` with a named action (``"kill@2"``) or a callable (on hit ``nth`` only,
    or every hit). Re-arming resets the hit count. ValueError on an unknown name or action."""
    if name not in POINTS:
        raise ValueError(f"unknown failpoint {name!r}; known: {', '.join(POINTS)}")
    if isinstance(action, str):
        fn, parsed = parse_action(action)
        nth = parsed if parsed is not None else nth
    else:
        fn = action
    if nth is not None and nth < 1:
        raise ValueError(f"failpoint hit count must be >= 1, got {nth}")
    _ARMED[name] = _Armed(name=name, action=fn, nth=nth)


def arm_from_spec(spec: str) -> list[str]:
    """Arm every ``name=action[@N]`` of a comma-separated spec; return the names armed."""
    names = []
    for item in spec.split(","):
        if not item.strip():
            continue
        name, eq, action = item.partition("=")
        if not eq:
            raise ValueError(f"failpoint spec item {item!r}: want name=action[@N]")
        arm(name.strip(), action.strip())
        names.append(name.strip())
    return names


def disarm(name: str) -> None:
    """Make ``name`` a no-op again."""
    _ARMED.pop(name, None)


def disarm_all() -> None:
    """Make every point a no-op again."""
    _ARMED.clear()


def armed(name: str) -> bool:
    """Is ``name`` armed?"""
    return name in _ARMED


def hits(name: str) -> int:
    """Hits of ``name`` since it was armed (0 when not armed)."""
    point = _ARMED.get(name)
    return 0 if point is None else point.hits


def failpoint(name: str, when: Callable[[], bool] | None = None) -> None:
    """The call site: a no-op unless ``name`` is armed. ``when`` (evaluated only when armed)
    narrows the point, e.g. to blocks holding a key rotation."""
    point = _ARMED.get(name)
    if point is None:
        return
    if when is not None and not when():
        return
    with point.lock:
        point.hits += 1
        fire = point.nth is None or point.hits == point.nth
    if fire:
        point.action()


def _arm_from_env() -> None:
    spec = os.environ.get(ENV, "")
    if spec:
        arm_from_spec(spec)


_arm_from_env()


__all__ = [
    "ACTIONS",
    "ENV",
    "POINTS",
    "arm",
    "arm_from_spec",
    "armed",
    "disarm",
    "disarm_all",
    "failpoint",
    "hits",
    "parse_action",
]

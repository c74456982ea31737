"""The loader's resume state: what :meth:`RevamperLoader.state_dict` saves, checked on load.

A state is small (the plan is a pure function of the loader's arguments): a position, ``epoch``
and ``batch``, plus the arguments the plan depends on, which must match the loader that loads it.
A state comes from a file, so it is input: every field's type and range is checked before any of
it is used, and a refused state leaves the loader exactly as it was.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Mapping
from typing import Any, Final

from revamper.plan.config import MAX_EPOCH, MAX_REUSE_FACTOR

STATE_VERSION: Final = 1
_STATE_KEYS = ("num_samples", "reuse_factor", "batch_size", "seed", "drop_last", "shuffle")
# Keys added later, with the value a state saved before then implies (None: unknown, so a state
# without the key is not checked for it).
_DEFAULTED_KEYS: Final[dict[str, Any]] = {
    "world_size": 1,
    "rank": 0,
    "group_size": 1,
    "balance_misses": None,
    "max_reuse_factor": None,
}
IDENTITY_KEYS: Final = (*_STATE_KEYS, *_DEFAULTED_KEYS)
"""The plan's fields a state records (:meth:`LoaderConfig.state_identity` reads them)."""
SCHEDULE_KEY: Final = "reuse_schedule"
"""The reuse factors ``reuse_factor="auto"`` chose for epochs 1, 2, ...: run state, like the
position (a loader takes the state's). Only an auto loader's state has it (empty before its
first choice), and only an auto loader takes a state with it."""
_REQUIRED = ("version", "epoch", "batch", *_STATE_KEYS)
_KNOWN = frozenset((*_REQUIRED, *_DEFAULTED_KEYS, SCHEDULE_KEY))
_FLAGS = frozenset(("drop_last", "shuffle", "balance_misses"))
_SEED_HINT = (
    " (pass seed=state['seed'] when you build the loader: a loader built with seed=None takes "
    "the state's seed only before its first epoch and without a disk cache, which keeps the seed "
    "it was made with)"
)


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """A validated state: where to resume, and the seed to take (if the loader may and must)."""

    epoch: int
    batch: int
    adopt_seed: int | None
    reuse_schedule: tuple[int, ...] = ()
    auto: bool = False
    """Whether a loader with ``reuse_factor="auto"`` saved it (it has a ``reuse_schedule``)."""


def make_state(identity: Mapping[str, Any], epoch: int, batch: int) -> dict[str, Any]:
    """The state of the loader of ``identity`` (:data:`IDENTITY_KEYS`) at ``batch`` of ``epoch``."""
    return {"version": STATE_VERSION, "epoch": epoch, "batch": batch, **identity}


def check_state(
    state: object,
    identity: Mapping[str, Any],
    num_batches: int,
    may_adopt_seed: Callable[[int], bool],
) -> ResumePoint:
    """Validate ``state`` against the loader of ``identity``; change nothing.

    Args:
        state: What :meth:`RevamperLoader.state_dict` returned (as loaded from a checkpoint).
        identity: The loading loader's :data:`IDENTITY_KEYS` and their values.
        num_batches: Batches per epoch of the loading loader.
        may_adopt_seed: Whether the loader may take the state's (different) seed instead of its
            own (one it drew itself, before its first epoch).

    Returns:
        The position to resume from, and the seed to adopt (``None``: keep the loader's).

    Raises:
        TypeError: If ``state`` is not a mapping, or a field has the wrong type (the message
            names the key and the type allowed).
        ValueError: If ``state`` is not a RevamperLoader state of this version, has unknown or
            missing keys, a field out of range (the message names the key and the range), or
            comes from a loader with another data set length, reuse factor, batch size, seed,
            ``drop_last``, ``shuffle``, ``balance_misses`` or rank layout.
    """
    if not isinstance(state, Mapping):
        raise TypeError(
            "state must be a mapping, what RevamperLoader.state_dict() returns; got "
            f"{type(state).__name__}"
        )
    version = state.get("version")
    integer = isinstance(version, numbers.Integral) and not isinstance(version, bool)
    if not integer or version != STATE_VERSION:  # any integer type; 1.0 and True are not 1
        raise ValueError(
            f"not a RevamperLoader state (version {STATE_VERSION}): state['version'] is "
            f"{_short(version)}"
        )
    unknown = sorted(repr(key) for key in state if key not in _KNOWN)
    if unknown:
        raise ValueError(
            f"not a RevamperLoader state: unknown keys {', '.join(unknown)} (a state has "
            f"{', '.join(sorted(_KNOWN))})"
        )
    missing = [key for key in _REQUIRED if key not in state]
    if missing:
        raise ValueError(f"not a RevamperLoader state: missing keys {', '.join(missing)}")
    fields = {
        key: _check_field(key, state[key], state)
        for key in state
        if key not in ("version", SCHEDULE_KEY)
    }
    schedule = _check_schedule(state.get(SCHEDULE_KEY, ()))
    adopt_seed = None
    for key in IDENTITY_KEYS:
        found = fields.get(key, _DEFAULTED_KEYS.get(key))
        mine = identity[key]
        if key == "max_reuse_factor":  # R; None (and a state from before it): R = r
            found = fields["reuse_factor"] if found is None else found
            mine = identity["reuse_factor"] if mine is None else mine
        if found is None or found == mine:
            continue
        if key == "seed" and may_adopt_seed(found):
            adopt_seed = found
            continue
        raise ValueError(
            f"cannot resume: the state has {key}={found!r}, this loader has {key}={mine!r}"
            f"{_SEED_HINT if key == 'seed' else ''}"
        )
    if fields["batch"] > num_batches:
        raise ValueError(
            f"state['batch'] must be from 0 to {num_batches} (the batches of an epoch of "
            f"this loader), got {fields['batch']}"
        )
    return ResumePoint(
        fields["epoch"], fields["batch"], adopt_seed, schedule, SCHEDULE_KEY in state
    )


def check_reuse_kind(point: ResumePoint, *, auto: bool, reuse_factor: int) -> None:
    """Refuse a state saved with a fixed r for an auto loader, and the other way round.

    The two can have the same identity (``reuse_factor="auto"`` starts at r = 1, so a fixed
    r = 1 with the same ``max_reuse_factor`` matches it), but a state saved mid-epoch by one
    resumed by the other would finish that epoch under another r: samples repeated and missed.
    Also refused: an auto state resuming mid-epoch whose schedule lacks that epoch's r.

    Raises:
        ValueError: If the state and the loader differ in how they choose r.
    """
    if point.auto and not auto:
        raise ValueError(
            "cannot resume: the state comes from a loader with reuse_factor='auto' (it has a "
            f"reuse_schedule), this loader has reuse_factor={reuse_factor}"
        )
    if auto and not point.auto:
        raise ValueError(
            "cannot resume: the state comes from a loader with a fixed reuse_factor (it has no "
            "reuse_schedule), this loader has reuse_factor='auto'"
        )
    if auto and point.batch > 0 and point.epoch > len(point.reuse_schedule):
        raise ValueError(
            f"cannot resume: the state is inside epoch {point.epoch} but its reuse_schedule "
            f"has the r of only {len(point.reuse_schedule)} epochs after the first"
        )


def _check_schedule(value: object) -> tuple[int, ...]:
    """``state["reuse_schedule"]`` as a tuple, if it is a list of ints from 1 to the limit.

    Whether it fits the loader (its ``max_reuse_factor``) is the plan's check, made by the
    loader before it takes the state.
    """
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"state[{SCHEDULE_KEY!r}] must be a list of ints, got {_short(value)}")
    checked = []
    for epoch, r in enumerate(value, 1):
        if isinstance(r, bool) or not isinstance(r, numbers.Integral):
            raise TypeError(
                f"state[{SCHEDULE_KEY!r}][{epoch - 1}] (r of epoch {epoch}) must be an int, "
                f"got {_short(r)}"
            )
        if not 1 <= int(r) <= MAX_REUSE_FACTOR:
            raise ValueError(
                f"state[{SCHEDULE_KEY!r}][{epoch - 1}] (r of epoch {epoch}) must be from 1 to "
                f"{MAX_REUSE_FACTOR}, got {int(r)}"
            )
        checked.append(int(r))
    return tuple(checked)


def _check_field(key: str, value: object, state: Mapping[Any, Any]) -> Any:
    """Return ``state[key]`` (``value``) if its type and range are those of ``key``, else raise."""
    if key in _FLAGS:
        if key == "balance_misses" and value is None:
            return None  # an older state that did not know
        if not isinstance(value, bool):
            raise TypeError(f"state[{key!r}] must be a bool, got {_short(value)}")
        return value
    if key == "max_reuse_factor" and value is None:
        return None  # a fixed r's bound is its r
    world = state.get("world_size", 1)
    world_size = world if isinstance(world, int) and not isinstance(world, bool) else 1
    low, high = {
        "epoch": (0, MAX_EPOCH),
        "batch": (0, None),  # the epoch's length is checked once the layout is known
        "num_samples": (1, None),
        "reuse_factor": (1, MAX_REUSE_FACTOR),
        "max_reuse_factor": (1, MAX_REUSE_FACTOR),
        "batch_size": (1, None),
        "seed": (0, None),
        "world_size": (1, None),
        "rank": (0, max(0, world_size - 1)),
        "group_size": (1, max(1, world_size)),
    }[key]
    allowed = f"from {low} to {high}" if high is not None else f">= {low}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"state[{key!r}] must be an int {allowed}, got {_short(value)}")
    number = int(value)
    if number < low or (high is not None and number > high):
        raise ValueError(f"state[{key!r}] must be an int {allowed}, got {_short(number)}")
    return number


def _short(value: object) -> str:
    """``value`` for an error message: its type and a repr cut to a readable length."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"

"""Masked-prediction tasks: spelling and parsing.

A task is spelled ``"OBSERVED->TARGETS"`` with 1-based positions inside a
window of consecutive tokens:

* ``","`` separates positions (observed tokens, or separate targets);
* ``"*"`` joins target positions into one tensor-product target.

Examples: ``"1->2"`` predicts ``x2`` from ``x1``; ``"1,3->2"`` is the
BERT-style middle; ``"1->2*3"`` predicts the tensor product ``x2 ⊗ x3`` from
``x1``; ``"1->2,3"`` predicts ``x2`` and ``x3`` as two separate targets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["MaskedTask", "parse_task"]

_POSITIONS = r"\d+(?:,\d+)*"
_TARGETS = r"\d+(?:[*,]\d+)*"
_SPELLING = re.compile(rf"^({_POSITIONS})->({_TARGETS})$")


@dataclass(frozen=True)
class MaskedTask:
    """An immutable masked-prediction task.

    Build one with :func:`parse_task`; the attributes are derived from the
    spelling and never change.

    Attributes
    ----------
    spec : str
        Canonical spelling, e.g. ``"1->2*3"``.
    observed : tuple of int
        Sorted 1-based positions of the visible tokens.
    targets : tuple of tuple of int
        One tuple per target; a target with several positions is their tensor
        product, in the order spelled (the flattened output is row-major in
        that order).
    """

    spec: str
    observed: tuple[int, ...]
    targets: tuple[tuple[int, ...], ...]

    @property
    def target_positions(self) -> tuple[int, ...]:
        """All predicted positions, sorted."""
        return tuple(sorted(p for t in self.targets for p in t))

    @property
    def positions(self) -> tuple[int, ...]:
        """All positions the task touches, sorted."""
        return tuple(sorted(self.observed + self.target_positions))

    @property
    def span(self) -> int:
        """Shortest window length that holds the task (its largest position)."""
        return max(self.positions)

    @property
    def is_tensor(self) -> bool:
        """Whether some target is a tensor product of several tokens."""
        return any(len(t) > 1 for t in self.targets)

    def target_dim(self, n_features: int) -> int:
        """Length of the flattened target for tokens of dimension ``n_features``."""
        return sum(n_features ** len(t) for t in self.targets)

    def __str__(self) -> str:
        return self.spec


def parse_task(task) -> MaskedTask:
    """Parse a task spelling into a :class:`MaskedTask`.

    Parameters
    ----------
    task : str or MaskedTask
        Spelling such as ``"1->2*3"``; a :class:`MaskedTask` is returned
        unchanged. White space is ignored.

    Returns
    -------
    MaskedTask

    Raises
    ------
    ValueError
        If the spelling is malformed, a position is below 1, a position is
        repeated, or the observed and predicted positions overlap.
    """
    if isinstance(task, MaskedTask):
        return task
    if not isinstance(task, str):
        raise TypeError(
            f"task must be a string such as '1->2*3', got {type(task).__name__}"
        )
    return _parse_cached("".join(task.split()))


@lru_cache(maxsize=256)
def _parse_cached(spelling: str) -> MaskedTask:
    match = _SPELLING.match(spelling)
    if match is None:
        raise ValueError(
            f"malformed task {spelling!r}: expected 'OBSERVED->TARGETS' with "
            "1-based positions, ',' between positions and '*' joining a "
            "tensor-product target, e.g. '1->2', '1,3->2' or '1->2*3'"
        )
    observed = tuple(int(p) for p in match.group(1).split(","))
    targets = tuple(
        tuple(int(p) for p in target.split("*")) for target in match.group(2).split(",")
    )
    flat_targets = [p for t in targets for p in t]
    if min(observed + tuple(flat_targets)) < 1:
        raise ValueError(f"task {spelling!r}: positions are 1-based, found 0")
    if len(set(observed)) != len(observed):
        raise ValueError(f"task {spelling!r}: an observed position is repeated")
    if len(set(flat_targets)) != len(flat_targets):
        raise ValueError(f"task {spelling!r}: a predicted position is repeated")
    overlap = sorted(set(observed) & set(flat_targets))
    if overlap:
        raise ValueError(
            f"task {spelling!r}: position(s) {overlap} are both observed and "
            "predicted; a masked token cannot also be visible"
        )
    observed = tuple(sorted(observed))
    spec = (
        ",".join(map(str, observed))
        + "->"
        + ",".join("*".join(map(str, t)) for t in targets)
    )
    return MaskedTask(spec=spec, observed=observed, targets=targets)

"""Setting a condition the way meta.SetStatusCondition does: the transition time moves
only when the status changes."""

from __future__ import annotations

from forja_api.v1alpha1.common import Condition

__all__ = ["condition", "set_condition"]


def condition(  # noqa: PLR0917 - mirrors meta.SetStatusCondition's fields
    ctype: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
    prev: Condition | None = None,
) -> Condition:
    """The condition ``ctype`` now, keeping ``prev``'s transition time if its status holds."""
    value = "True" if status else "False"
    keep = prev is not None and prev.status == value and prev.last_transition_time
    return Condition(
        type=ctype,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=prev.last_transition_time if keep and prev else now,
        observed_generation=generation,
    )


def set_condition(  # noqa: PLR0917 - mirrors meta.SetStatusCondition's fields
    conds: list[Condition],
    ctype: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> None:
    """Replace the condition of type ``ctype`` in ``conds`` (or append it)."""
    for i, old in enumerate(conds):
        if old.type == ctype:
            conds[i] = condition(ctype, status, reason, message, generation, now, old)
            return
    conds.append(condition(ctype, status, reason, message, generation, now))

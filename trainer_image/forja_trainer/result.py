"""The final word of an attempt: a :class:`Result` in the termination message file.

The kubelet copies ``/dev/termination-log`` into the pod status, where the operator
reads it. Local runs point ``FORJA_TERMINATION_MESSAGE_PATH`` elsewhere. Both trainer
images write it the same way, with :func:`forja_api.contract.write_termination_message`.
"""

from __future__ import annotations

from forja_api.contract import TERMINATION_PATH_ENV, termination_path
from forja_api.contract import write_termination_message as write_result

__all__ = ["TERMINATION_PATH_ENV", "termination_path", "write_result"]

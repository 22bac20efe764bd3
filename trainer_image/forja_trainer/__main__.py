"""``python -m forja_trainer`` (in a pod: the spec from FORJA_SPEC), or ``... run FILE`` locally."""

from __future__ import annotations

import sys


def _main() -> int:
    if len(sys.argv) > 1:
        from forja_trainer.cli import main  # noqa: PLC0415

        return main(sys.argv[1:])
    from forja_trainer.runtime import main as pod_main  # noqa: PLC0415

    return pod_main()


if __name__ == "__main__":
    sys.exit(_main())

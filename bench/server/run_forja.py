"""Start ``python -m forja_server`` for the benchmark (kept as a seam for profiling)."""

from forja_server.cli import main

raise SystemExit(main())

"""Pure functions from typed specs to manifest dicts: no client imports, no I/O."""

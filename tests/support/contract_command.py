"""The contract trainer (contract_trainer.py beside this file) as a TrainingJob's
``command``: its source goes in through ``python -c``, since no image holds the tests.
It runs in forja/trainer."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONTRACT_TRAINER"]

CONTRACT_TRAINER = ["python", "-c", Path(__file__).with_name("contract_trainer.py").read_text()]

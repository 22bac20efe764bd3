"""``python -m forja_trainer_tf``: the TF trainer image's entry point."""

import sys

from forja_trainer_tf.cli import main

sys.exit(main())

"""Training: the settings and their presets, the losses and schemes, the loop and its step, and the
checkpoints, resuming, run log and multi-process pieces around them. Imports nothing here: `sdn sample`
reads checkpoints and option choices from this package and must not load the loop (tests/test_startup.py)."""

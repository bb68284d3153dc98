"""CrossHair plugin (crosshair check --extra_plugin): the seeded bugs in the tiny world.

Run by ``qthrottle selfcheck``; see model/bounded.py.
"""
from qthrottle.engines.seeded.bugs import MODELS
from qthrottle.model.bounded import register_tiny_world

register_tiny_world(*MODELS)

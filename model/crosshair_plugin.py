"""CrossHair plugin (crosshair check --extra_plugin): the reference in the tiny world.

Run by ``qthrottle selfcheck``; see model/bounded.py.
"""
from qthrottle.model.bounded import register_tiny_world

register_tiny_world()

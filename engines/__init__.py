"""Engines that check an implementation against the reference model (qthrottle.engines)."""

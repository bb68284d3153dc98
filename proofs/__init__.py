"""z3 proofs of the extracted C: invariants 1, 2, 3, 4 and 7 for every valid event.

engine.prove_target is the entry point. The pipeline:
  space.py      symbolic QMP events (event, members with presence) under the schema
  translate.py  symbolic execution of the queue, hash and equality functions
                (execution.py: states and merges; library.py: QDict and string
                functions; values.py: C values as z3 terms)
  callbacks.py  the translated functions as the model's HashFn / EqualFn
  theorems.py   model/invariants.py's invariants over them; totality.py: invariant 7
  solve.py      PROVED / FALSIFIED / UNKNOWN, vacuity checks, readable counterexamples
  replay.py     counterexamples replayed against the compiled C; report.py prints
"""

import z3

from qthrottle.core import interrupt_with

# SIGINT is qthrottle's to handle, not z3's (by default z3 takes it during a check and
# turns it into an UNKNOWN result, and the run goes on); a signal interrupts the check
# in progress instead, so that the command stops at once (core.signals_stop_the_command).
# The interruption leaves z3's context cancelled until its next check: an empty check
# clears it when the command ends, so that a later command of the process can push.
z3.set_param("ctrl_c", False)
interrupt_with(lambda: z3.main_ctx().interrupt(), lambda: z3.Solver().check())

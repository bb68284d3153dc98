"""z3 proofs of the extracted C: invariants 1, 2, 3, 4 and 7 for every valid event, and
3, 4, 5 and 6 for every timeline.

engine.prove_target is the entry point. The pipeline:
  space.py      symbolic QMP events (event, members with presence) under the schema
  translate.py  symbolic execution of the queue, hash and equality functions
                (execution.py: states and merges; library.py: QDict and string
                functions; values.py: C values as z3 terms)
  callbacks.py  the translated functions as the model's HashFn / EqualFn
  theorems.py   model/invariants.py's invariants over them; totality.py: invariant 7
  transition.py one key's throttle as a transition system: the queue function and the
                timer handler translated with the state of the key's record
  induction.py  invariants 3-6 (model/invariants.py's key_step) by k-induction over it
  solve.py      PROVED / FALSIFIED / UNKNOWN, vacuity checks, readable counterexamples
  replay.py     counterexamples replayed against the compiled C; report.py prints
"""

"""The engines that run the throttle: the stateful engine (the compiled C and the reference
model side by side on timelines drawn from the schema, in batches), the differential runner
(two C builds on the same timelines), the one minimiser and the search bounds they share,
and CrossHair on the reference model (selfcheck). Engines never import proofs/; what they
need from another layer (a policy, a target) is passed in.
"""

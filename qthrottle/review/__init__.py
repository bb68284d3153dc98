"""Review tools built from the proofs and the engines: verify reports, diff, explore,
mutate, the policy lint and the one counterexample format."""

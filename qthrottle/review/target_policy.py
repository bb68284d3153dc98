"""A target's throttle policy, derived from its code, handed to the engines.

The proofs (proofs/) and the engines (engines/) never import each other: this
module, above both, derives the policy with z3 (proofs/policy.py) and gives the
stateful engine the policy and the events whose key it left UNKNOWN.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

from qthrottle.engines import stateful
from qthrottle.engines.bounds import Profile
from qthrottle.engines.stateful import SearchResult, Subject
from qthrottle.harness.target import Target
from qthrottle.proofs.policy import DerivedPolicy
from qthrottle.proofs.remembered import remembered_policy
from qthrottle.proofs.solve import DEFAULT_TIMEOUT_MS


def target_policy(target: Target, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> DerivedPolicy:
    return remembered_policy(target.extract(), target.catalog(), timeout_ms)


@contextmanager
def open_subject(target: Target, derived: Optional[DerivedPolicy] = None) -> Iterator[Subject]:
    """The stateful engine's subject: the target's sanitized driver and derived policy."""
    derived = derived or target_policy(target)
    with stateful.open_subject(target, derived.policy, derived.unknown) as subject:
        yield subject


def verify_target(target: Target, profile: Profile, seed_value: int,
                  derived: Optional[DerivedPolicy] = None) -> SearchResult:
    """The stateful search on a target, judged by the policy its code implements."""
    with open_subject(target, derived) as subject:
        return stateful.search(subject, profile, seed_value)

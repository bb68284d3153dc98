"""Invariants 3, 4, 5 and 6 for timelines of any length: k-induction over one key.

The system (transition.py) is one key's throttle state, stepped by the
translated queue function and timer handler. The properties are the per-key
obligations of model/invariants.py (key_step), evaluated on z3 terms: the
obligations of invariant N on each step, and "the C stays in the model" (no
second record of the key, no abort of the queue function or the handler; for N
other than 3, no record freed while the table holds it: what follows a
dangling entry is a use-after-free, invariant 8's).

For k = 1, 2, ... up to MAX_K:
* base case (the bounded check): no timeline of k steps from the initial state
  (clock 0, empty table) breaks them. The first that does is the shortest
  violating timeline: FALSIFIED, replayed on the sanitized C by engine.py (and
  UNKNOWN if the C does not break the invariant there); one that leaves the
  model first is UNKNOWN, with its timeline;
* step case (k up to MAX_STEP_K): from ANY state, k steps that keep them keep
  them at the next step. A step case that fails is no falsification: its state
  may be unreachable. It is tried again assuming the window lemmas, the state a
  correct throttle keeps; Houdini's algorithm keeps those that hold initially
  and that every step keeps (together an inductive invariant, so assuming them
  is sound), and the report names them.

What the decomposition assumes: records of other keys never meet the key's in
GLib's probes. That is the decomposition theorem, proved first for every pair of
records the table can hold: a GLib match is exactly "same key" (the policy's).
Where it is not PROVED, the per-key proof does not apply (engine.py): only the
timelines it finds count.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import z3

from qthrottle.harness.extract import Extraction
from qthrottle.model import invariants as inv
from qthrottle.model.ghash import Record, matches
from qthrottle.model.members import KINDS, member_kind
from qthrottle.model.policy import Policy
from qthrottle.model.timeline import Advance, Operation, Queue, format_ns

from .callbacks import Callbacks
from .execution import FALSE, TRUE
from .solve import FALSIFIED, GOAL_GIVE_UPS, GOAL_RLIMIT, PROVED, UNKNOWN, decide, timeout
from .space import EventSpace, SymbolicRecord
from .transition import (
    CLOCK_LIMIT,
    ChosenRecord,
    EventRef,
    Slot,
    World,
    ite,
    ns,
    queue_step,
    time_var,
    timer_step,
)

Term = Any
RUN_INVARIANTS = (3, 4, 5, 6)
MAX_K = 5  # the deepest bounded check: the seeded bugs break an invariant within 5 steps
MAX_STEP_K = 2  # the largest k tried in the step case (with the lemmas, k=1 proves the
# releases; past 2 a failing step case only costs time: the bounded check goes on)


@dataclass
class Frame:
    """The state of the key between two steps."""

    now: Term
    slot: Slot
    memory: inv.KeyMemory
    next_seq: Term  # the number the next queued event gets
    newest: Term  # the number of the key's newest non-stop event (-1: none)


@dataclass
class StepVars:
    """The choices of one step: what kind, which event, which new clock."""

    queue: Term
    timer: Term
    record: SymbolicRecord
    target: Term


@dataclass
class Unrolling:
    """Frames 0..n and the steps between them, for one proof."""

    world: World
    frames: List[Frame]
    steps: List[StepVars] = field(default_factory=list)
    obligations: List[List[inv.KeyObligation]] = field(default_factory=list)
    constraints: List[List[Term]] = field(default_factory=list)  # how each step may go
    ends: List[Term] = field(default_factory=list)  # the C leaves the model in the step
    aborts: List[Term] = field(default_factory=list)  # ... as QEMU aborts
    dangling: List[Term] = field(default_factory=list)  # a record freed in the table

    def obeys(self, step: int, invariant: int) -> Term:
        """Invariant @invariant's obligations on step @step."""
        return z3.And(*(o.holds for o in self.obligations[step] if o.invariant == invariant))

    def holds(self, step: int, invariant: int) -> Term:
        """Invariant @invariant's obligations on step @step, and the C stays in the model
        (past a dangling entry only invariant 3 follows it: a use-after-free is next)."""
        parts = [self.obeys(step, invariant), z3.Not(self.ends[step])]
        if invariant != 3:
            parts.append(z3.Not(self.dangling[step]))
        return z3.And(*parts)


def _memory(make: Callable[[str, bool], Term]) -> inv.KeyMemory:
    start = inv.KeyMemory.start()
    return inv.KeyMemory(*(make(f.name, isinstance(getattr(start, f.name), bool))
                           for f in fields(inv.KeyMemory)))


def initial_frame(world: World) -> Frame:
    """Clock 0, no record, nothing queued or emitted yet."""
    start = inv.KeyMemory.start()
    memory = _memory(lambda name, flag: z3.BoolVal(getattr(start, name)) if flag
                     else ns(getattr(start, name)))
    return Frame(ns(0), Slot.empty(world.cb.record("unused")), memory, ns(0), ns(-1))


def any_frame(world: World) -> Frame:
    """An arbitrary state: the step case starts anywhere."""
    held = EventRef(z3.Bool("s0.held.nil"), time_var("s0.held.seq"),
                    time_var("s0.held.at"), z3.Bool("s0.held.stop"),
                    z3.Bool("s0.held.throttled"), z3.Bool("s0.held.ours"))
    slot = Slot(z3.Bool("s0.live"), z3.Bool("s0.in_table"), z3.Bool("s0.armed"),
                time_var("s0.deadline"), held, world.cb.record("s0"))
    memory = _memory(lambda name, flag: z3.Bool(f"m0.{name}") if flag
                     else time_var(f"m0.{name}"))
    return Frame(time_var("now0"), slot, memory, time_var("seq0"), time_var("newest0"))


def _chosen(world: World, choices: Sequence[Tuple[Term, SymbolicRecord]],
            otherwise: SymbolicRecord) -> SymbolicRecord:
    kept = [(c, r) for c, r in choices if r is not otherwise and not z3.is_false(c)]
    return ChosenRecord(world.fresh("stored"), kept, otherwise) if kept else otherwise


def _merge_slots(world: World, queue: Term, timer: Term, queued: Slot, fired: Slot,
                 idle: Slot) -> Slot:
    def pick(name: str) -> Term:
        return ite([(queue, getattr(queued, name)), (timer, getattr(fired, name))],
                   getattr(idle, name))
    held = EventRef.merged([(queue, queued.held), (timer, fired.held), (TRUE, idle.held)])
    assert isinstance(held, EventRef)
    return Slot(pick("live"), pick("in_table"), pick("armed"), pick("deadline"), held,
                _chosen(world, [(queue, queued.stored), (timer, fired.stored)], idle.stored))


def _declare_members(world: World, record: SymbolicRecord) -> None:
    """Every member of a throttled event exists on @record, so that two queued events of
    one key can differ in data (a counterexample shows it when the C's choice matters)."""
    space = world.space
    for event in space.catalog.events.values():
        if event.name not in world.policy.rates:
            continue
        for member in event.members:
            record.present(member.name)
            kind = member_kind(member)
            if kind in KINDS:
                record.value(member.name, kind)


def extend(unrolling: Unrolling, quiet_after: int, readable: bool) -> None:
    """One more step from the last frame; @readable: its event declares every member a
    counterexample may show (the step case needs none of them)."""
    world, frame = unrolling.world, unrolling.frames[-1]
    index = len(unrolling.steps)
    record = world.cb.record(f"e{index + 1}")
    if readable:
        _declare_members(world, record)
    step = StepVars(z3.Bool(f"queue{index + 1}"), z3.Bool(f"timer{index + 1}"), record,
                    time_var(f"clock{index + 1}"))
    slot = frame.slot
    queued = queue_step(world, slot, frame.now, record, frame.next_seq)
    fired = timer_step(world, slot, frame.now)
    advance = z3.And(z3.Not(step.queue), z3.Not(step.timer))
    pending = z3.And(slot.live, slot.armed)
    now = ite([(step.queue, frame.now), (step.timer, fired.now)], step.target)
    seen = world.seen(record, frame.now, frame.next_seq)
    unrolling.constraints.append([
        z3.Not(z3.And(step.queue, step.timer)),
        z3.Implies(step.timer, pending),
        z3.Implies(advance, z3.And(frame.now <= step.target,
                                   z3.Implies(pending, step.target < slot.deadline))),
        z3.Implies(step.queue, queued.returns), z3.Implies(step.timer, fired.returns),
        # An event of another key: whether its step aborts is its own key's question.
        z3.Implies(z3.And(step.queue, z3.Not(seen.ours)), z3.Not(queued.aborts)),
        z3.And(now >= 0, now < CLOCK_LIMIT, frame.next_seq + 1 < CLOCK_LIMIT)])
    rate = world.rate(world.key)
    emissions = [_emission(z3.And(step.queue, c), ref, frame.now, frame, True)
                 for c, ref in queued.emissions]
    emissions += [_emission(z3.And(step.timer, c), ref, fired.now, frame, False)
                  for c, ref in fired.emissions]
    in_table = ite([(step.queue, queued.in_table), (step.timer, fired.in_table)],
                   slot.in_table)
    dangling = z3.Or(z3.And(step.queue, queued.dangling), z3.And(step.timer, fired.dangling))
    key_step = inv.KeyStep(
        before=frame.now, after=now, queue=step.queue,
        queued=z3.And(step.queue, seen.ours), event=inv.Seen(frame.now, seen.stop,
                                                             seen.throttled),
        emissions=tuple(emissions), in_table=in_table, dangling=dangling)
    obligations, memory = inv.key_step(frame.memory, key_step, rate, quiet_after)
    aborts = z3.Or(z3.And(step.queue, queued.aborts), z3.And(step.timer, fired.aborts))
    unrolling.aborts.append(aborts)
    unrolling.ends.append(z3.Or(z3.And(step.queue, queued.escape),
                                z3.And(step.timer, fired.escape), aborts))
    unrolling.dangling.append(dangling)
    newer = z3.And(step.queue, seen.ours, z3.Not(seen.stop))
    unrolling.steps.append(step)
    unrolling.obligations.append(obligations)
    unrolling.frames.append(Frame(
        now, _merge_slots(world, step.queue, step.timer, queued.slot, fired.slot, slot),
        memory, z3.If(step.queue, frame.next_seq + 1, frame.next_seq),
        z3.If(newer, frame.next_seq, frame.newest)))


def _emission(happens: Term, ref: EventRef, t: Term, frame: Frame,
              queue: bool) -> inv.KeyEmission:
    return inv.KeyEmission(
        happens=z3.And(happens, z3.Not(ref.nil), ref.ours), t=t,
        event=inv.Seen(ref.at, ref.stop, ref.throttled), known=TRUE,
        at_once=ref.seq == frame.next_seq if queue else FALSE, newest=ref.seq == frame.newest)


# ------------------------------------------------------------------ lemmas

def window_lemmas(world: World, frame: Frame) -> List[Tuple[str, Term]]:
    """What a correct throttle keeps of one key's state, for the step case: the key's
    record (its window) and the obligations' memory agree. Not invariants: each is
    used only while the bounded check and the step case confirm it."""
    slot, memory, held, now = frame.slot, frame.memory, frame.slot.held, frame.now
    rate = world.rate(world.key)
    stored = slot.stored
    cb = world.cb
    live = slot.live
    table_record = z3.And(cb.reaches_table(stored),
                          cb.translation("hash", stored).defined(),
                          cb.translation("equal", stored, stored).defined())
    return [
        ("the clock and the memory's times are in range, in the past",
         z3.And(now >= 0, now < CLOCK_LIMIT, memory.last_queue >= 0,
                memory.last_queue <= now, memory.last_emitted <= now,
                memory.last_recent <= now, memory.waiting_since <= now)),
        ("event numbers are in range", z3.And(frame.next_seq >= 0, frame.next_seq < CLOCK_LIMIT,
                                              frame.newest >= -1, frame.newest < frame.next_seq)),
        ("only a throttled key has a record", z3.Implies(live, rate > 0)),
        ("a record of the key is in the table exactly while it exists",
         live == slot.in_table),
        ("its timer is pending while it exists", z3.Implies(live, slot.armed)),
        ("its deadline is within one interval after the clock",
         z3.Implies(live, z3.And(now < slot.deadline, slot.deadline <= now + rate))),
        ("it was stored from an event of the key the queue function looks up",
         z3.Implies(live, z3.And(world.ours(stored), table_record))),
        ("it holds back nothing when it does not exist", z3.Implies(z3.Not(live), held.nil)),
        ("it holds back no stop event", z3.Implies(z3.Not(held.nil), z3.Not(held.stop))),
        ("it holds back only a throttled event of the key, queued in its window",
         z3.Implies(z3.Not(held.nil), z3.And(
             held.ours, held.throttled, slot.deadline - rate <= held.at,
             held.at <= memory.last_queue, held.seq < frame.next_seq))),
        ("a non-stop event it holds back is the key's newest",
         z3.Implies(z3.And(z3.Not(held.nil), z3.Not(held.stop)), held.seq == frame.newest)),
        ("an emission of the key opened its window",
         z3.Implies(live, z3.And(memory.recent, slot.deadline - rate <= memory.last_recent))),
        ("the key's last non-stop emission is an interval before its deadline, or more",
         z3.Implies(z3.And(live, memory.emitted), memory.last_emitted + rate <= slot.deadline)),
        ("without a record the key is quiet",
         z3.Implies(z3.And(z3.Not(live), memory.emitted), memory.last_emitted + rate <= now)),
        ("a non-stop emission is an emission", z3.Implies(memory.emitted, z3.And(
            memory.recent, memory.last_emitted <= memory.last_recent))),
        ("the event the key waits for is the non-stop event held back",
         z3.Implies(memory.waiting, z3.And(z3.Not(held.nil), z3.Not(held.stop),
                                           memory.waiting_since == held.at))),
        ("the window ends within two intervals of the last queued event",
         z3.Implies(live, slot.deadline <= memory.last_queue + 2 * rate)),
    ]


# ------------------------------------------------------------------ results

@dataclass
class RunProof:
    """One invariant's k-induction: its verdict, the k it ended at, its timeline."""

    invariant: int
    status: str
    reason: str  # FALSIFIED: the obligation the timeline breaks; UNKNOWN: why
    k: int = 0
    unaided: str = ""  # PROVED with the window lemmas: what the step case said without
    timeline: List[Operation] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Decomposition:
    """The decomposition theorem's verdict (a GLib match is exactly "same key")."""

    status: str
    reason: str
    events: Dict[str, Record] = field(default_factory=dict)


@dataclass
class Strengthening:
    """What the k-induction of one target rests on, for its report."""

    decomposition: Decomposition
    lemmas: List[str]  # the window lemmas kept: together an inductive invariant
    candidates: List[str]  # every window lemma tried
    problem: Optional[str] = None  # why the lemmas could not be decided (a timeout)
    # k -> what z3 found satisfiable of the proofs' assumptions at k (none is vacuous)
    satisfiable: Dict[int, str] = field(default_factory=dict)


class Prover:
    """The k-induction of invariants 3, 4, 5, 6 on one target."""

    def __init__(self, space: EventSpace, extraction: Extraction, policy: Policy,
                 timeout_ms: int) -> None:
        self.space, self.extraction, self.policy = space, extraction, policy
        self.timeout_ms = timeout_ms
        # Set when only FALSIFIED verdicts will be reported (the decomposition theorem
        # fails): a timeline that leaves the model is then not made readable.
        self.falsified_only = False
        self.quiet_after = inv.quiet_period(policy)
        self.base = Unrolling(self._world(), [])
        self.base.frames.append(initial_frame(self.base.world))
        self.inductive = Unrolling(self._world(), [])
        self.inductive.frames.append(any_frame(self.inductive.world))
        self._strengthening: Optional[Tuple[List[str], Optional[str]]] = None
        self.satisfiable: Dict[int, str] = {}  # k -> the assumptions shown satisfiable

    def rests_on(self) -> Strengthening:
        """The decomposition theorem's verdict and the lemmas kept (computed once)."""
        kept, problem = self.strengthening()
        names = [name for name, _ in window_lemmas(self.base.world, self.base.frames[0])]
        return Strengthening(decomposition(self.space, self.extraction, self.policy,
                                           self.timeout_ms), kept, names, problem)

    def _world(self) -> World:
        return World(Callbacks(self.space, self.extraction), self.policy)

    def _unroll(self, unrolling: Unrolling, depth: int) -> None:
        while len(unrolling.steps) < depth:
            extend(unrolling, self.quiet_after, readable=unrolling is self.base)

    def _facts(self, unrolling: Unrolling, depth: int) -> List[Term]:
        """How the first @depth steps may go, on valid events (computed last: valid()
        covers the members the translations touched)."""
        world = unrolling.world
        steps = unrolling.steps[:depth]
        records = [world.key, *(s.record for s in steps)]
        facts = [c for step in unrolling.constraints[:depth] for c in step]
        if unrolling is self.inductive:
            records.append(unrolling.frames[0].slot.stored)
        elif steps:
            # The bounded check queues events of the key only, the first step first. By
            # the decomposition theorem an event of another key changes nothing of the
            # key's state but the time of the last queued event, which only puts off
            # invariant 3's quiet period; nor does anything before the key's first event:
            # the shortest violating timeline has neither.
            facts += [steps[0].queue, *(world.ours(s.record) for s in steps)]
        return [*facts, *(r.valid() for r in records)]

    def _solver(self, facts: Sequence[Term]) -> Any:
        # Equalities solved and unconstrained terms eliminated first: the unrolled steps
        # are mostly definitions (measured: 3-5 times faster on the bounded check).
        solver = z3.Then("simplify", "propagate-values", "solve-eqs", "elim-uncnstr",
                         "smt").solver()
        solver.set("timeout", self.timeout_ms)
        solver.add(*facts)
        return solver

    # ---------------------------------------------------------- base case

    def _stays(self, unrolling: Unrolling, step: int, invariant: int) -> Term:
        """The C stays in the model in @step, as invariant @invariant follows it."""
        left = unrolling.ends[step] if invariant == 3 else \
            z3.Or(unrolling.ends[step], unrolling.dangling[step])
        return z3.Not(left)

    def bounded(self, invariants: Sequence[int], depth: int) -> Dict[int, RunProof]:
        """Timelines of @depth steps from the initial state whose last step is the first to
        break one of @invariants (FALSIFIED, to be replayed) or, failing that, to leave the
        per-key model (UNKNOWN). One query per invariant and way."""
        self._unroll(self.base, depth)
        base, last = self.base, depth - 1
        facts = self._facts(base, depth)
        kept = {n: z3.And(*(base.holds(j, n) for j in range(last))) for n in invariants}
        found: Dict[int, RunProof] = {}
        # Models found at this depth: a goal one of them meets is satisfiable, no query
        # needed (measured: the queries are most of the bounded check's time).
        models: List[z3.ModelRef] = []
        # One by one, never their disjunction: z3 often gives up on it, and where it does
        # not it takes longer than all of them (measured: 0.3-3 s at depth 2 of
        # stop-irreflexive, against 0.01-0.7 s each).
        for n in invariants:
            for leaving in (False, True):
                if n in found:
                    break
                # A step that leaves the model still shows what the C emitted in it,
                # unless QEMU aborted in it.
                goal = z3.And(kept[n], z3.Not(self._stays(base, last, n))) if leaving else \
                    z3.And(kept[n], z3.Not(base.aborts[last]), z3.Not(base.obeys(last, n)))
                hard = [*facts, goal]
                if not any(_meets(m, hard) for m in models):
                    solver = self._solver(hard)
                    answer = solver.check()
                    if answer == z3.unknown:
                        found[n] = RunProof(n, UNKNOWN, timeout(
                            self.timeout_ms, solver, f"the bounded check at depth {depth}"),
                            k=depth)
                        continue
                    if answer == z3.unsat:
                        continue
                    models.append(solver.model())
                if leaving and self.falsified_only:
                    found[n] = RunProof(n, UNKNOWN, "the timeline leaves the per-key model",
                                        k=depth)
                    continue
                model, timeline = self._counterexample(depth, hard)
                found[n] = self._verdict(n, depth, model, timeline, leaving)
        return found

    def _counterexample(self, depth: int, hard: Sequence[Term]
                        ) -> Tuple[z3.ModelRef, List[Operation]]:
        """A model of @hard (sat) that reads well, and its timeline. Its queued events
        differ in data where they can: a trace knows an event by its data, so the C shows
        which one it emits (newest wins) only then."""
        records = [s.record for s in self.base.steps[:depth]]
        distinct = [z3.Not(_same_data(a, b)) for i, a in enumerate(records)
                    for b in records[i + 1:]]
        solver = self._solver([*hard, *distinct])
        if solver.check() == z3.sat:
            hard = [*hard, *distinct]
        else:
            solver = self._solver(hard)
            solver.check()
        model = solver.model()
        events, goals = self._preferences(self.base, depth, model)
        model = self._readable([*hard, *events], goals) or model
        return model, self._timeline(self.base, depth, model)

    def _verdict(self, invariant: int, depth: int, model: z3.ModelRef,
                 timeline: List[Operation], leaving: bool) -> RunProof:
        base, last = self.base, depth - 1
        if leaving:
            def holds(term: Term) -> bool:
                return bool(z3.is_true(model.eval(term, model_completion=True)))
            why = ("the queue function or the timer handler aborts QEMU" if holds(
                base.aborts[last]) else "the C keeps a second record of the key" if holds(
                base.ends[last]) else "the C frees a record the table still holds "
                "(invariant 3), and a use-after-free follows")
            return RunProof(invariant, UNKNOWN, f"{why} in the last step of this timeline; "
                            "the per-key model ends there, and no shorter timeline breaks the "
                            "invariant", k=depth, timeline=timeline)
        what = next(o for o in base.obligations[last] if o.invariant == invariant
                    and z3.is_false(model.eval(o.holds, model_completion=True)))
        return RunProof(invariant, FALSIFIED, what.what, k=depth, timeline=timeline)

    def _preferences(self, unrolling: Unrolling, depth: int,
                     model: z3.ModelRef) -> Tuple[List[Term], List[Tuple[Term, int]]]:
        """The events @model queues, kept (hard), and soft goals for a timeline that reads
        well and shows what the C does: queued events differ (so that the C shows which
        one it emits), strings from the stateful engine's universe, optional members
        absent, round clock steps."""
        space = self.space
        records = [s.record for s in unrolling.steps[:depth]]
        events = [model.eval(r.event, model_completion=True) for r in records]
        hard = [r.event == e for r, e in zip(records, events)]
        goals: List[Tuple[Term, int]] = []
        for i, a in enumerate(records):
            goals += [(z3.Not(_same_data(a, b)), 5) for b in records[i + 1:]]
        for record, event in zip(records, events):
            name = space.names[event.as_long()]
            members = [m.name for m in space.catalog.events[name].members] \
                if name in space.catalog.events else []
            goals += record.preferences(members)
        goals += [(step.target == frame.now, 1) for step, frame
                  in zip(unrolling.steps[:depth], unrolling.frames)]
        return hard, goals

    def _readable(self, hard: Sequence[Term], soft: Sequence[Tuple[Term, int]]
                  ) -> Optional[z3.ModelRef]:
        """A model of @hard meeting as many @soft goals as a few queries find: each weight's
        goals at once, else halves of them (greedy, as solve.readable, but in far fewer
        queries: a timeline's events have dozens of goals)."""
        solver = self._solver(hard)
        if solver.check() != z3.sat:
            return None
        models = [solver.model()]
        # Per check: z3's resource units, not a wall clock, so that the counterexample is
        # the same on a busy machine; a goal too costly is given up, always.
        solver.set("rlimit", GOAL_RLIMIT)

        given_up = 0

        def meet(goals: List[Term]) -> None:
            nonlocal given_up
            if not goals or given_up == GOAL_GIVE_UPS:
                return
            solver.push()
            solver.add(*goals)
            answer = solver.check()
            if answer == z3.sat:
                models.append(solver.model())
                return  # kept (the push stays)
            solver.pop()
            given_up += answer == z3.unknown
            if len(goals) > 1:
                meet(goals[:len(goals) // 2])
                meet(goals[len(goals) // 2:])
        for weight in sorted({w for _, w in soft}, reverse=True):
            meet([g for g, w in soft if w == weight])
        return models[-1]

    def _timeline(self, unrolling: Unrolling, depth: int,
                  model: z3.ModelRef) -> List[Operation]:
        """The steps as a timeline the C driver replays."""
        def value(term: Term) -> int:
            return int(model.eval(term, model_completion=True).as_long())

        operations: List[Operation] = []
        for step, before, after in zip(unrolling.steps[:depth], unrolling.frames,
                                       unrolling.frames[1:depth + 1]):
            if z3.is_true(model.eval(step.queue, model_completion=True)):
                operations.append(Queue(*step.record.concrete(model)))
            else:
                operations.append(Advance(max(0, value(after.now) - value(before.now))))
        return operations

    # ---------------------------------------------------------- step case

    @staticmethod
    def _lemmas(unrolling: Unrolling, frame: Frame, names: Sequence[str]) -> List[Term]:
        made = dict(window_lemmas(unrolling.world, frame))
        return [made[name] for name in names]

    def _kinds(self, unrolling: Unrolling, step: int) -> List[Tuple[str, Term]]:
        """The three kinds of a step: z3 answers each far faster than their disjunction."""
        choice = unrolling.steps[step]
        return [("queue", choice.queue), ("timer", choice.timer),
                ("clock", z3.And(z3.Not(choice.queue), z3.Not(choice.timer)))]

    def _refute(self, hypotheses: Sequence[Term], kinds: Sequence[Tuple[str, Term]],
                goals: Sequence[Term]) -> Tuple[Dict[int, z3.ModelRef], Dict[int, str]]:
        """The goals under @hypotheses, one kind of step at a time (z3 answers each far
        faster than their disjunction): the goals a state breaks (with such a state; each
        state found drops every goal it breaks), and those z3 could not decide (why).
        Goals are tried together, and one by one when z3 cannot decide them together."""
        broken: Dict[int, z3.ModelRef] = {}
        undecided: Dict[int, str] = {}

        def settle(kind: Term, indices: List[int]) -> None:
            while indices:
                solver = self._solver([*hypotheses, kind])
                solver.add(z3.Not(z3.And(*(goals[i] for i in indices))))
                answer = solver.check()
                if answer == z3.unsat:
                    return
                if answer == z3.unknown:
                    if len(indices) == 1:
                        undecided[indices[0]] = timeout(self.timeout_ms, solver, "the step case")
                    else:
                        for i in indices:
                            settle(kind, [i])
                    return
                model = solver.model()
                for i in indices:
                    if z3.is_false(model.eval(goals[i], model_completion=True)):
                        broken[i] = model
                indices = [i for i in indices if i not in broken]
        for _, kind in kinds:
            settle(kind, [i for i in range(len(goals)) if i not in broken and i not in undecided])
        return broken, undecided

    def strengthening(self) -> Tuple[List[str], Optional[str]]:
        """The window lemmas that hold initially and are kept by every step from any state
        that keeps them all (Houdini: drop the broken ones until none is): an inductive
        invariant of the system, whatever the run invariants say. Computed once."""
        if self._strengthening is None:
            self._unroll(self.base, 0)
            self._unroll(self.inductive, 1)
            base, unrolling = self.base, self.inductive
            names = [name for name, _ in window_lemmas(base.world, base.frames[0])]
            initially = self._lemmas(base, base.frames[0], names)
            solver = self._solver(self._facts(base, 0))
            kept = [n for n, term in zip(names, initially)
                    if solver.check(z3.Not(term)) == z3.unsat]
            dropped: List[str] = []  # for z3's want of time: kept only when proved
            while kept:
                hypotheses = [*self._facts(unrolling, 1),
                              *self._lemmas(unrolling, unrolling.frames[0], kept)]
                goals = self._lemmas(unrolling, unrolling.frames[1], kept)
                broken, undecided = self._refute(hypotheses, self._kinds(unrolling, 0), goals)
                if not broken and not undecided:
                    break
                dropped += [kept[i] for i in undecided]
                kept = [n for i, n in enumerate(kept) if i not in broken and i not in undecided]
            problem = (f"z3 could not decide {len(dropped)} window lemma(s) within the solver "
                       f"timeout ({self.timeout_ms} ms), left out") if dropped else None
            self._strengthening = (kept, problem)
        return self._strengthening

    def inductive_step(self, invariants: Sequence[int], k: int, lemmas: Sequence[str]
                       ) -> Tuple[Dict[int, z3.ModelRef], Dict[int, str]]:
        """The step case at @k for each of @invariants: from any state keeping @lemmas (an
        inductive invariant) in which k-1 steps keep the invariant, the k-th does. Returns
        a counterexample to induction (no verdict) for each invariant whose step case
        fails, and why z3 could not decide the others it could not; the rest are proved."""
        self._unroll(self.inductive, k)
        unrolling = self.inductive
        hypotheses = [*self._facts(unrolling, k),
                      *(t for j in range(k) for t in self._lemmas(unrolling,
                                                                 unrolling.frames[j], lemmas))]
        goals = [z3.Implies(z3.And(*(unrolling.holds(j, n) for j in range(k - 1))),
                            unrolling.holds(k - 1, n)) for n in invariants]
        broken, undecided = self._refute(hypotheses, self._kinds(unrolling, k - 1), goals)
        return ({invariants[i]: model for i, model in broken.items()},
                {invariants[i]: why for i, why in undecided.items()})

    def vacuity(self, k: int, lemmas: Sequence[str]) -> Optional[str]:
        """Why a proof at @k would hold only vacuously, if it would: no timeline of k steps
        of the key from the initial state (the base case's assumptions), or no queue,
        timer or clock step from the states the step case starts from. Otherwise what was
        shown satisfiable is kept in self.satisfiable[k]."""
        self._unroll(self.base, k)
        solver = self._solver(self._facts(self.base, k))
        answer = solver.check()
        if answer == z3.unknown:
            return timeout(self.timeout_ms, solver, "the bounded check's assumptions")
        if answer == z3.unsat:
            return (f"vacuous: no timeline of {k} step(s) of the key from the initial state "
                    "(the bounded check's assumptions are unsatisfiable)")
        unrolling = self.inductive
        hypotheses = [*self._facts(unrolling, k),
                      *(t for j in range(k) for t in self._lemmas(unrolling,
                                                                 unrolling.frames[j], lemmas))]
        for name, kind in self._kinds(unrolling, k - 1):
            solver = self._solver([*hypotheses, kind])
            answer = solver.check()
            if answer == z3.unknown:
                return timeout(self.timeout_ms, solver, "the step case's assumptions")
            if answer == z3.unsat:
                return f"vacuous: the step case's assumptions admit no {name} step"
        self.satisfiable[k] = (
            f"k={k}: a timeline of {k} step(s) of the key from the initial state; from the "
            f"states the step case starts from (the {len(lemmas)} lemmas kept"
            + (f", {k - 1} step(s) keeping the invariant" if k > 1 else "")
            + "), a queue, a timer and a clock step")
        return None

    def describe_cti(self, model: z3.ModelRef) -> str:
        """A counterexample to induction's first state, for people."""
        frame = self.inductive.frames[0]
        slot, memory = frame.slot, frame.memory

        def show(term: Term) -> str:
            value = model.eval(term, model_completion=True)
            return format_ns(value.as_long()) if z3.is_int_value(value) and \
                value.as_long() >= 0 else str(value)
        if z3.is_true(model.eval(slot.live, model_completion=True)):
            record = (f"a record of the key (in the table: {show(slot.in_table)}, timer "
                      f"pending: {show(slot.armed)}, deadline t={show(slot.deadline)})")
        else:
            record = "no record of the key"
        emitted = (f"its last non-stop emission at t={show(memory.last_emitted)}"
                   if z3.is_true(model.eval(memory.emitted, model_completion=True))
                   else "nothing of the key emitted")
        return f"clock t={show(frame.now)}, {record}, {emitted}"

    # -------------------------------------------------------------- proof

    def prove(self, invariants: Sequence[int] = RUN_INVARIANTS) -> Dict[int, RunProof]:
        """Bounded check and step case for k = 1, 2, ...: each invariant's first verdict."""
        start = time.perf_counter()
        results = self._prove(list(invariants))
        for result in results.values():
            result.seconds = time.perf_counter() - start
        return results

    def _prove(self, invariants: List[int]) -> Dict[int, RunProof]:
        lemmas, problem = self.strengthening()
        results: Dict[int, RunProof] = {}
        unaided: Dict[int, str] = {}
        cti: Dict[int, str] = {}
        for k in range(1, MAX_K + 1):
            results.update(self.bounded([n for n in invariants if n not in results], k))
            open_ = [n for n in invariants if n not in results]
            if not open_:
                break
            if k > MAX_STEP_K:  # the bounded check goes on alone: a violation may be deeper
                continue
            if k == 1:
                failed, _ = self.inductive_step(open_, 1, [])
                unaided = {n: ("the step case alone fails, from states no timeline reaches "
                               f"(e.g. {self.describe_cti(model)})")
                           for n, model in failed.items()}
            failed, undecided = self.inductive_step(open_, k, lemmas)
            for n, why in undecided.items():
                results[n] = RunProof(n, UNKNOWN, why, k=k, unaided=unaided.get(n, ""))
            proved = [n for n in open_ if n not in failed and n not in undecided]
            if proved:
                empty = self.vacuity(k, lemmas)
                for n in proved:
                    results[n] = RunProof(n, UNKNOWN, empty, k=k) if empty else RunProof(
                        n, PROVED, "", k=k, unaided=unaided.get(n, ""))
            cti.update({n: self.describe_cti(model) for n, model in failed.items()})
        note = f" ({problem})" if problem else ""
        for n in invariants:
            if n not in results:
                results[n] = RunProof(
                    n, UNKNOWN, f"no timeline of up to {MAX_K} steps breaks it, but the step "
                    f"case fails up to k={MAX_STEP_K} even with the lemmas kept{note} (e.g. "
                    f"from {cti.get(n, '?')}): the lemmas this code needs are not among them",
                    k=MAX_K, unaided=unaided.get(n, ""))
        return results


def _meets(model: z3.ModelRef, terms: Sequence[Term]) -> bool:
    """@model makes every one of @terms true: they are satisfiable, @model shows it."""
    return all(z3.is_true(model.eval(t, model_completion=True)) for t in terms)


def _same_data(a: SymbolicRecord, b: SymbolicRecord) -> Term:
    """Same event, same members (presence and values) as far as the proof declared them."""
    facts = [a.event == b.event]
    # In declaration order, never a set's: the terms' order steers z3's search, and a
    # string set's order changes with every process (PYTHONHASHSEED).
    for member in [m for m in a._present if m in b._present]:
        facts.append(a.present(member) == b.present(member))
    for key in [k for k in a._values if k in b._values]:
        facts.append(a.value(*key) == b.value(*key))
    return z3.And(*facts)


def decomposition(space: EventSpace, extraction: Extraction, policy: Policy,
                  timeout_ms: int) -> Decomposition:
    """The theorem the per-key proofs rest on: for every two records the table can hold
    (valid events the queue function looks up, on which the callbacks return), GLib's
    probe for one stops at the other exactly when the policy gives them the same key.
    Then records of other keys never meet the key's record (lookup, add, remove), and
    every event of the key meets it: the throttle is one independent system per key."""
    world = World(Callbacks(space, extraction), policy)
    cb = world.cb
    stored, probe = cb.record("stored"), cb.record("probe")
    match, same = matches(cb.hash, cb.equal, stored, probe), world.same_key(stored, probe)
    verdict = decide(cb.domain([stored, probe]),
                     [("a GLib match is exactly the same key", match == same)], timeout_ms,
                     cb.preferences())
    if verdict.model is None:
        return Decomposition(verdict.status, verdict.reason)
    model = verdict.model
    events = {name: cb.records[name].concrete(model) for name in ("stored", "probe")}
    found = z3.is_true(model.eval(match, model_completion=True))
    why = (f"GLib's probe for `probe` {'stops' if found else 'does not stop'} at `stored`, "
           f"whose key is {'another' if found else 'the same'} (invariant 1 or 2 fails)")
    return Decomposition(verdict.status, why, events)

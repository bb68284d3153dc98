"""The machine the end-to-end engine drives, and how a guest makes each event happen.

A pc machine under qtest with no PIT, no HPET and no vapic ROM: the only timers
on its virtual clock are then the event throttle's own, so qtest's bare
``clock_step`` lands exactly on the throttle's next deadline and says when there
is none. Its devices queue throttled events the way a guest makes them happen,
through port I/O (as QEMU's own rtc-test and ide-test do):

* RTC_CHANGE (throttled per event name): the guest sets the CMOS clock: SET bit
  in register B, the date in BCD, SET cleared; QEMU queues one event with the
  offset from the host's clock. The host's clock is frozen with libfaketime
  (QEMU's throttle runs on the virtual clock, which it does not touch), so the
  offset is exactly what the guest wrote minus ``-rtc base``.
* BLOCK_IO_ERROR (throttled per qom-path, action=stop never throttled): ide-hd
  disks over blkdebug over null-co; an ATA READ or WRITE SECTORS by PIO fails
  with EIO, and the disk's rerror/werror makes it report, ignore or stop. Each
  stop is a transient error (a blkdebug rule used once, on a sector of its own):
  after the STOP event the engine sends ``cont`` (RESUME), the retried request
  succeeds, and the virtual clock is running again before the next step.
* QUORUM_REPORT_BAD (throttled per node-name): a quorum disk whose children are
  raw nodes over blkdebug; child k fails reads of sector k + 1, the vote still
  succeeds, and QEMU reports the child by its node-name. Not sector 0: ide-hd
  reads it when the disk is created (to guess a geometry), before any QMP client
  is there, and a failing child would open a throttle window nobody sees.
"""
from __future__ import annotations

import calendar
import errno
import glob
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from qthrottle.model.timeline import Queue

from .qemu_process import QemuError, QemuProcess

BASE_DATE = "2000-01-01T00:00:00"  # -rtc base: RTC_CHANGE offsets count from here
BASE_SECONDS = calendar.timegm(time.strptime(BASE_DATE, "%Y-%m-%dT%H:%M:%S"))
# The dates the guest sets, 1970-01-01 to 2099-12-31: the CMOS clock's BCD year and
# century hold them, and they are offsets either side of BASE_DATE.
RTC_OFFSETS = (calendar.timegm((1970, 1, 1, 0, 0, 0)) - BASE_SECONDS,
               calendar.timegm((2100, 1, 1, 0, 0, 0)) - BASE_SECONDS - 1)
IO_ERROR = os.strerror(errno.EIO)  # QEMU's "reason" and "error" members: strerror(EIO)
PERIPHERAL = "/machine/peripheral/"
LIBFAKETIME_GLOBS = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1",
                     "/usr/local/lib/faketime/libfaketime.so.1")
_POLLS = 1000  # qtest reads while waiting for an asynchronous completion


@dataclass(frozen=True)
class IdeSlot:
    bus: str
    unit: int
    base: int  # command block I/O port


# The four PIIX IDE slots; a fifth disk (the quorum) sits on an ISA IDE controller.
IDE_SLOTS = (IdeSlot("ide.0", 0, 0x1F0), IdeSlot("ide.0", 1, 0x1F0),
             IdeSlot("ide.1", 0, 0x170), IdeSlot("ide.1", 1, 0x170))
ISA_IDE = IdeSlot("isaide.0", 0, 0x1E8)
ISA_IDE_DEVICE = "isa-ide,id=isaide,iobase=0x1e8,iobase2=0x3ee,irq=11"
# (werror, rerror) per slot: every action on at least two disks, and both disks
# whose qom-paths collide in g_str_hash (the last two) have two throttled actions.
DISK_ACTIONS = (("stop", "report"), ("stop", "ignore"), ("report", "ignore"),
                ("ignore", "report"))

# ATA
_STATUS, _NSECTOR, _DRIVE, _LBA0 = 7, 2, 6, 3
_BSY, _DRQ = 0x80, 0x08
READ_SECTORS, WRITE_SECTORS = 0x20, 0x30
# CMOS: register, and the field of time.struct_time it holds (BCD).
_CMOS_INDEX, _CMOS_DATA, _REG_B, _SET, _H24 = 0x70, 0x71, 0x0B, 0x80, 0x02
_CMOS_FIELDS = ((0x00, "tm_sec"), (0x02, "tm_min"), (0x04, "tm_hour"), (0x07, "tm_mday"),
                (0x08, "tm_mon"), (0x09, "year"), (0x32, "century"))


@dataclass(frozen=True)
class Disk:
    id: str
    slot: IdeSlot
    werror: str
    rerror: str

    @property
    def qom_path(self) -> str:
        return PERIPHERAL + self.id

    @property
    def node(self) -> str:
        return f"{self.id}-raw"

    def action(self, operation: str) -> str:
        return self.werror if operation == "write" else self.rerror

    def event_data(self, operation: str) -> Dict[str, Any]:
        """BLOCK_IO_ERROR's data, as QEMU's send_qmp_error_event builds it."""
        data: Dict[str, Any] = {"qom-path": self.qom_path, "device": "", "node-name": self.node,
                                "operation": operation, "action": self.action(operation),
                                "reason": IO_ERROR}
        # Present when the BlockBackend's iostatus is on: blk_iostatus_is_enabled()
        # holds when an error action can stop the VM.
        if "stop" in (self.werror, self.rerror):
            data["nospace"] = False
        return data


@dataclass(frozen=True)
class RtcSet:
    """The guest sets the CMOS clock to BASE_DATE + offset seconds."""

    offset: int

    @classmethod
    def of(cls, offset: int) -> RtcSet:
        """The guest's setting for an RTC_CHANGE offset the schema allows (any int64):
        one the guest can set (RTC_OFFSETS) is kept, another is folded into them."""
        low, high = RTC_OFFSETS
        return cls(low + (offset - low) % (high - low + 1))

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(BASE_SECONDS + self.offset))
        return f"guest sets the RTC to {when}"


@dataclass(frozen=True)
class DiskIo:
    """The guest reads or writes one sector of a disk, and it fails with EIO."""

    disk: Disk
    operation: str  # "read" or "write"

    def describe(self) -> str:
        option = "werror" if self.operation == "write" else "rerror"
        return (f"guest {self.operation}s {self.disk.id} "
                f"({option}={self.disk.action(self.operation)}): EIO")


@dataclass(frozen=True)
class QuorumRead:
    """The guest reads the sector that one quorum child fails (the vote still succeeds)."""

    quorum: str
    child: str
    sector: int

    def describe(self) -> str:
        return f"guest reads {self.quorum} sector {self.sector}: child {self.child} fails (EIO)"


Trigger = Union[RtcSet, DiskIo, QuorumRead]


def find_libfaketime() -> Optional[Path]:
    """Debian's libfaketime (package libfaketime), or None."""
    for pattern in LIBFAKETIME_GLOBS:
        for path in sorted(glob.glob(pattern)):
            return Path(path)
    return None


def _blockdev(node: str, name: str, faults: List[Dict[str, Any]]) -> str:
    """raw @node over blkdebug (the injected faults) over null-co (reads give zeros)."""
    return json.dumps({
        "driver": "raw", "node-name": node,
        "file": {"driver": "blkdebug", "node-name": f"{name}-faults", "inject-error": faults,
                 "image": {"driver": "null-co", "node-name": f"{name}-null", "size": 1 << 20,
                           "read-zeroes": True}}}, separators=(",", ":"))


@dataclass(frozen=True)
class Machine:
    """The devices, and what each trigger makes QEMU queue."""

    disks: Tuple[Disk, ...]
    quorum: str
    quorum_children: Tuple[str, ...]
    stops_per_disk: int  # transient write errors prepared per stop disk

    @classmethod
    def create(cls, qom_paths: Sequence[str], node_names: Sequence[str],
               stops_per_disk: int) -> Machine:
        """Disks named by @qom_paths (under /machine/peripheral/), quorum children by
        @node_names, as many as there are slots."""
        disks = []
        for path, slot, (werror, rerror) in zip(qom_paths, IDE_SLOTS, DISK_ACTIONS):
            if not path.startswith(PERIPHERAL):
                raise ValueError(f"a disk's qom-path must be under {PERIPHERAL}: {path}")
            disks.append(Disk(path[len(PERIPHERAL):], slot, werror, rerror))
        return cls(tuple(disks), "quorum0", tuple(node_names), stops_per_disk)

    def disk(self, name: str) -> Optional[Disk]:
        """The disk with this qom-path or id."""
        return next((d for d in self.disks if name in (d.qom_path, d.id)), None)

    def args(self, bios: Path) -> List[str]:
        """QEMU's command line, but for the qtest and QMP connections."""
        args = ["-machine", "pc,pit=off,hpet=off", "-accel", "qtest", "-nodefaults",
                "-display", "none", "-bios", str(bios), "-global", "apic-common.vapic=off",
                "-rtc", f"base={BASE_DATE}"]
        for disk in self.disks:
            faults: List[Dict[str, Any]] = [{"event": "read_aio", "iotype": "read"}]
            if disk.werror == "stop":  # one transient error per stop, each on its own sector
                faults += [{"event": "write_aio", "iotype": "write", "sector": sector,
                            "once": True} for sector in range(self.stops_per_disk)]
            else:
                faults.append({"event": "write_aio", "iotype": "write"})
            args += ["-blockdev", _blockdev(disk.node, disk.id, faults), "-device",
                     f"ide-hd,id={disk.id},drive={disk.node},bus={disk.slot.bus},"
                     f"unit={disk.slot.unit},werror={disk.werror},rerror={disk.rerror}"]
        for child in self.quorum_children:
            args += ["-blockdev", _blockdev(child, child, [{
                "event": "read_aio", "iotype": "read", "sector": self._sector(child)}])]
        good = f"{self.quorum}-good"
        args += ["-blockdev", json.dumps({"driver": "null-co", "node-name": good,
                                          "size": 1 << 20, "read-zeroes": True},
                                         separators=(",", ":")),
                 "-blockdev", json.dumps({"driver": "quorum", "node-name": f"{self.quorum}-raw",
                                          "vote-threshold": 1,
                                          "children": [*self.quorum_children, good]},
                                         separators=(",", ":")),
                 "-device", ISA_IDE_DEVICE,
                 "-device", f"ide-hd,id={self.quorum},drive={self.quorum}-raw,"
                 f"bus={ISA_IDE.bus},unit={ISA_IDE.unit}"]
        return args

    @staticmethod
    def env(libfaketime: Optional[Path]) -> Dict[str, str]:
        env = {"LC_ALL": "C"}  # strerror() in event data
        if libfaketime is not None:
            preload = " ".join(filter(None, (str(libfaketime), os.environ.get("LD_PRELOAD"))))
            asan = ":".join(filter(None, (os.environ.get("ASAN_OPTIONS"),
                                          "verify_asan_link_order=0")))
            # An absolute FAKETIME freezes the host clock; the monotonic clock runs on,
            # for QEMU's main loop.
            env.update(LD_PRELOAD=preload, FAKETIME="2000-01-01 00:00:00", TZ="UTC",
                       FAKETIME_DONT_FAKE_MONOTONIC="1", ASAN_OPTIONS=asan)
        return env

    def _sector(self, child: str) -> int:
        return self.quorum_children.index(child) + 1

    def quorum_read(self, child: str) -> QuorumRead:
        return QuorumRead(self.quorum, child, self._sector(child))

    def queued(self, trigger: Trigger, rtc_path: str) -> Tuple[Queue, ...]:
        """The events QEMU queues for @trigger, in order (STOP, and RESUME after cont)."""
        if isinstance(trigger, RtcSet):
            return (Queue("RTC_CHANGE", {"offset": trigger.offset, "qom-path": rtc_path}),)
        if isinstance(trigger, QuorumRead):
            return (Queue("QUORUM_REPORT_BAD", {
                "node-name": trigger.child, "sector-num": trigger.sector, "sectors-count": 1,
                "type": "read", "error": IO_ERROR}),)
        event = Queue("BLOCK_IO_ERROR", trigger.disk.event_data(trigger.operation))
        if trigger.disk.action(trigger.operation) == "stop":
            return (event, Queue("STOP"), Queue("RESUME"))
        return (event,)


class Guest:
    """A running Machine: triggers, clock steps, and the QMP events they cause."""

    def __init__(self, machine: Machine, binary: Path, bios: Path,
                 libfaketime: Optional[Path], timeout: float = 10.0) -> None:
        self.machine = machine
        self.frozen = libfaketime is not None
        self.frozen_at: Optional[Dict[str, Any]] = None
        self.stops: Dict[str, int] = {}
        self.qemu = QemuProcess(binary, machine.args(bios), machine.env(libfaketime), timeout)
        try:
            self.rtc_path = self._rtc_path()
        except BaseException:
            self.qemu.close()
            raise

    def __enter__(self) -> Guest:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.qemu.close()

    def _rtc_path(self) -> str:
        """The pc machine's CMOS RTC: the child "rtc" of the PIIX3 south bridge."""
        for entry in self.qemu.qmp("qom-list", {"path": "/machine/unattached"}):
            if entry.get("type") == "child<PIIX3>":
                return f"/machine/unattached/{entry['name']}/rtc"
        raise QemuError("no PIIX3 south bridge under /machine/unattached: not a pc machine?")

    # ---------------------------------------------------------------- events

    def sync(self) -> List[Dict[str, Any]]:
        """The QMP events QEMU has sent so far: a QMP round trip orders them before us.

        With a frozen host clock every event carries the same timestamp; one that
        does not means the clock was not frozen (libfaketime not loaded), and an
        RTC_CHANGE offset would follow the host's clock.
        """
        self.qemu.qmp("query-status")
        events = self.qemu.events()
        for event in events:
            if not self.frozen:
                continue
            self.frozen_at = self.frozen_at or event.get("timestamp")
            if event.get("timestamp") != self.frozen_at:
                raise QemuError(f"the host clock moved under libfaketime ({event.get('timestamp')}"
                                f" after {self.frozen_at}): was it preloaded into QEMU?")
        return events

    def clock_frozen(self) -> bool:
        """Whether the host clock is frozen (two events, one timestamp); leaves the VM running."""
        self.qemu.qmp("stop")
        self.qemu.qmp("cont")
        stamps = [event.get("timestamp") for event in self.qemu.events()]
        return len(stamps) == 2 and stamps[0] == stamps[1]

    # ----------------------------------------------------------------- clock

    def step_to_next_deadline(self) -> Optional[int]:
        """qtest's bare clock_step: the virtual time of the next timer, or None if none."""
        reply = self.qemu.qtest("clock_step")[0]
        if reply.startswith("OK "):
            return int(reply[3:])
        if "no pending deadline" in reply:
            return None
        raise QemuError(f"qtest: clock_step answered {reply!r}")

    def step(self, ns: int) -> int:
        """Advance the virtual clock by @ns > 0 (timers due run at their deadlines)."""
        return int(self.qemu.qtest_ok(f"clock_step {ns}")[0])

    # -------------------------------------------------------------- triggers

    def apply(self, trigger: Trigger) -> None:
        """Make the guest do @trigger and wait until QEMU has finished handling it."""
        if isinstance(trigger, RtcSet):
            self._set_rtc(trigger.offset)
        elif isinstance(trigger, QuorumRead):
            self._ata(ISA_IDE, READ_SECTORS, trigger.sector)
        else:
            self._disk_io(trigger.disk, trigger.operation)

    def _set_rtc(self, offset: int) -> None:
        when = time.gmtime(BASE_SECONDS + offset)
        fields = {"tm_sec": when.tm_sec, "tm_min": when.tm_min, "tm_hour": when.tm_hour,
                  "tm_mday": when.tm_mday, "tm_mon": when.tm_mon,
                  "year": when.tm_year % 100, "century": when.tm_year // 100}
        commands = [f"outb {_CMOS_INDEX:#x} {_REG_B:#x}", f"outb {_CMOS_DATA:#x} "
                    f"{_SET | _H24:#x}"]
        for register, name in _CMOS_FIELDS:
            value = fields[name]
            commands += [f"outb {_CMOS_INDEX:#x} {register:#x}",
                         f"outb {_CMOS_DATA:#x} {value // 10 << 4 | value % 10:#x}"]
        # Leaving set mode makes QEMU take the new time and queue RTC_CHANGE.
        commands += [f"outb {_CMOS_INDEX:#x} {_REG_B:#x}", f"outb {_CMOS_DATA:#x} {_H24:#x}"]
        self.qemu.qtest_ok(*commands)

    def _disk_io(self, disk: Disk, operation: str) -> None:
        sector = 0
        stops = operation == "write" and disk.werror == "stop"
        if stops:
            sector = self.stops.get(disk.id, 0)
            if sector >= self.machine.stops_per_disk:
                raise QemuError(f"{disk.id}: more than {self.machine.stops_per_disk} stop "
                                "errors in one run (Machine.stops_per_disk)")
            self.stops[disk.id] = sector + 1
        self._ata(disk.slot, WRITE_SECTORS if operation == "write" else READ_SECTORS, sector)
        if not stops:
            return
        # BLOCK_IO_ERROR is queued, then the VM stop request; STOP once it is done.
        self._poll(lambda: not self.qemu.qmp("query-status")["running"], "the VM to stop")
        self.qemu.qmp("cont")  # RESUME; the retried write finds the error gone
        self._poll(lambda: self._inb(disk.slot.base + _NSECTOR) == 0,
                   f"the retried write on {disk.id} to complete")
        self._poll(lambda: not self._inb(disk.slot.base + _STATUS) & _BSY, f"{disk.id} idle")

    def _inb(self, port: int) -> int:
        return int(self.qemu.qtest_ok(f"inb {port:#x}")[0], 16)

    def _poll(self, done: Callable[[], bool], what: str) -> None:
        for _ in range(_POLLS):
            if done():
                return
        raise QemuError(f"waited {_POLLS} polls for {what}")

    def _ata(self, slot: IdeSlot, command: int, sector: int) -> None:
        """One sector by PIO (LBA28), and wait for the command to complete."""
        base = slot.base
        self.qemu.qtest_ok(f"outb {base + _DRIVE:#x} {0xE0 | slot.unit << 4:#x}",
                           f"outb {base + _NSECTOR:#x} 0x1",
                           *(f"outb {base + _LBA0 + i:#x} {sector >> 8 * i & 0xFF:#x}"
                             for i in range(3)),
                           f"outb {base + _STATUS:#x} {command:#x}")
        if command == WRITE_SECTORS:
            self.qemu.qtest_ok(*[f"outw {base:#x} 0x0"] * 256)
        self._poll(lambda: not self._inb(base + _STATUS) & _BSY, "the disk command")
        if self._inb(base + _STATUS) & _DRQ:  # a read whose data waits: take it, as a guest
            self.qemu.qtest_ok(*[f"inw {base:#x}"] * 256)

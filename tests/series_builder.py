"""Patch series for the review tests, built at test time as a QEMU developer builds them.

A throwaway git repository holds the fetched QEMU 10.0.x monitor/ and qapi/ (never
committed to qthrottle), then our own commits: changes in monitor.c's shape written by
this project (a rate-table entry, a key over an optional member, a stop exemption moved
into a helper and broken, then repaired), exported with `git format-patch`.
"""
from __future__ import annotations

import email
import email.policy
import json
import mailbox
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import jsonschema

AUTHOR = "Zoë Developer <zoe@example.org>"  # non-ASCII: 8-bit or encoded headers

# --------------------------------------------------------------- our changes

RATE_ENTRY_AFTER = "    [QAPI_EVENT_HV_BALLOON_STATUS_REPORT] = { 1000 * SCALE_MS },\n"
UNPLUG_RATE = "    [QAPI_EVENT_DEVICE_UNPLUG_GUEST_ERROR] = { 1000 * SCALE_MS },\n"
MEMORY_FAILURE_RATE = "    [QAPI_EVENT_MEMORY_FAILURE]    = { 1000 * SCALE_MS },\n"

HASH_ANCHOR = "    if (evstate->event == QAPI_EVENT_QUORUM_REPORT_BAD) {\n"
UNPLUG_HASH_LINE = '        hash += g_str_hash(qdict_get_str(evstate->data, "device"));'
UNPLUG_HASH = ("    if (evstate->event == QAPI_EVENT_DEVICE_UNPLUG_GUEST_ERROR) {\n"
               f"{UNPLUG_HASH_LINE}\n"
               "    }\n\n")
EQUAL_ANCHOR = "    if (eva->event == QAPI_EVENT_QUORUM_REPORT_BAD) {\n"
UNPLUG_EQUAL = ("    if (eva->event == QAPI_EVENT_DEVICE_UNPLUG_GUEST_ERROR) {\n"
                '        return !strcmp(qdict_get_str(eva->data, "device"),\n'
                '                       qdict_get_str(evb->data, "device"));\n'
                "    }\n\n")

STOP_BLOCK = """\
    if (event == QAPI_EVENT_BLOCK_IO_ERROR) {
        QDict *data = qobject_to(QDict, qdict_get(qdict, "data"));
        const char *action = qdict_get_str(data, "action");
        if (!strcmp(action, "stop")) {
            throttled = false;
        }
    }
"""
STOP_CALL = """\
    if (event == QAPI_EVENT_BLOCK_IO_ERROR && monitor_qapi_event_is_stop(qdict)) {
        throttled = false;
    }
"""
QUEUE_DEFINITION = "static void\nmonitor_qapi_event_queue_no_reenter("
BROKEN_ACTION = '    return !strcmp(qdict_get_str(data, "action"), "report");'
STOP_HELPER = f"""\
/*
 * Is @qdict a BLOCK_IO_ERROR event whose action stops the VM?  Such an
 * event is never rate-limited (the management tool must see why).
 */
static bool monitor_qapi_event_is_stop(QDict *qdict)
{{
    QDict *data = qobject_to(QDict, qdict_get(qdict, "data"));

{BROKEN_ACTION}
}}

"""
FIXED_ACTION = '    return !strcmp(qdict_get_str(data, "action"), "stop");'
UNSUPPORTED_LOOP = "    for (int i = 0; i < 2; i++) {\n        hash += i;\n    }\n"
UNSUPPORTED_LINE = "    for (int i = 0; i < 2; i++) {"


def _insert_after(text: str, anchor: str, addition: str) -> str:
    assert text.count(anchor) == 1, anchor
    return text.replace(anchor, anchor + addition)


def _insert_before(text: str, anchor: str, addition: str) -> str:
    assert text.count(anchor) == 1, anchor
    return text.replace(anchor, addition + anchor)


def _replace(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# --------------------------------------------------------------- the repository

Change = Callable[[str], str]


@dataclass
class Repository:
    path: Path

    def git(self, *args: str) -> str:
        result = subprocess.run(["git", "-C", str(self.path), *args], capture_output=True,
                                text=True, check=True,
                                env={"GIT_AUTHOR_NAME": "Zoë Developer",
                                     "GIT_AUTHOR_EMAIL": "zoe@example.org",
                                     "GIT_COMMITTER_NAME": "Zoë Developer",
                                     "GIT_COMMITTER_EMAIL": "zoe@example.org",
                                     "GIT_AUTHOR_DATE": "2026-03-03T10:00:00+01:00",
                                     "GIT_COMMITTER_DATE": "2026-03-03T10:00:00+01:00",
                                     "HOME": str(self.path),
                                     "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        return result.stdout

    def edit(self, file: str, change: Change) -> None:
        path = self.path / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(change(path.read_text() if path.exists() else ""))

    def commit(self, subject: str, edits: Dict[str, Change], body: str = "") -> str:
        for file, change in edits.items():
            self.edit(file, change)
            self.git("add", file)
        message = f"{subject}\n\n{body}Signed-off-by: {AUTHOR}\n"
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD").strip()

    def format_patch(self, base: str, *options: str) -> str:
        """`git format-patch --stdout` of base..HEAD, threaded as git send-email sends it."""
        return self.git("format-patch", "--stdout", "--thread=shallow", *options,
                        f"{base}..HEAD")


def base_repository(qemu_tree: Path, where: Path) -> Repository:
    """A git repository with QEMU's monitor/ and qapi/ committed once (tag 'base')."""
    where.mkdir(parents=True)
    for directory in ("monitor", "qapi"):
        shutil.copytree(qemu_tree / directory, where / directory)
    repository = Repository(where)
    repository.git("init", "-q", "-b", "master")
    repository.git("add", "monitor", "qapi")
    repository.git("commit", "-q", "-m", "QEMU 10.0.x monitor/ and qapi/ (test input)")
    repository.git("tag", "base")
    return repository


# --------------------------------------------------------------- the series

def three_patch_series(repository: Repository) -> None:
    """1/3 rate-limits DEVICE_UNPLUG_GUEST_ERROR (and adds a doc file, not throttle code);
    2/3 keys it on its optional member "device" (invariant 7 falsified, at the hash's
    added line); 3/3 documents the rate limit in the schema (still falsified)."""
    repository.commit(
        "monitor: rate-limit DEVICE_UNPLUG_GUEST_ERROR",
        {"monitor/monitor.c": lambda t: _insert_after(t, RATE_ENTRY_AFTER, UNPLUG_RATE),
         "docs/devel/event-throttle.rst": lambda t: t + "Event throttling\n"
                                                        "================\n\n"
                                                        "A guest can flood unplug errors.\n"},
        "A guest that keeps failing unplug requests floods QMP clients.\n"
        "From the guest's side each failure is one event; git leaves this line\n"
        "unescaped in its mbox, a list archive escapes it.\n\n")
    repository.commit(
        "monitor: throttle DEVICE_UNPLUG_GUEST_ERROR per device",
        {"monitor/monitor.c": lambda t: _insert_before(
            _insert_before(t, HASH_ANCHOR, UNPLUG_HASH), EQUAL_ANCHOR, UNPLUG_EQUAL)},
        "One device's errors must not hide another's.\n\n")
    repository.commit(
        "qapi: document DEVICE_UNPLUG_GUEST_ERROR's rate limit",
        {"qapi/qdev.json": lambda t: _replace(
            t, "# @path: the device's QOM path\n#\n# Since: 6.2\n",
            "# @path: the device's QOM path\n#\n"
            "# .. note:: This event is rate-limited.\n#\n# Since: 6.2\n")})


def five_patch_series(repository: Repository) -> None:
    """3/5 moves the stop exemption into a helper that tests "report" (invariant 4
    falsified); 5/5 repairs the helper. 1/5, 2/5, 4/5 are harmless."""
    repository.commit(
        "monitor: say why the rate table limits guest events",
        {"monitor/monitor.c": lambda t: _replace(
            t, "    /* Limit guest-triggerable events to 1 per second */\n",
            "    /*\n     * Limit guest-triggerable events to 1 per second: a guest\n"
            "     * must not be able to flood the QMP clients.\n     */\n")})
    repository.commit(
        "monitor: rate-limit MEMORY_FAILURE",
        {"monitor/monitor.c": lambda t: _insert_after(t, RATE_ENTRY_AFTER,
                                                      MEMORY_FAILURE_RATE)})
    repository.commit(
        "monitor: move the BLOCK_IO_ERROR stop exemption into a helper",
        {"monitor/monitor.c": lambda t: _insert_before(
            _replace(t, STOP_BLOCK, STOP_CALL), QUEUE_DEFINITION, STOP_HELPER)})
    repository.commit(
        "qapi: BLOCK_IO_ERROR's rate limit in the event's documentation",
        {"qapi/block-core.json": lambda t: _replace(
            t, '# .. note:: This event is rate-limited, except if action is "stop".\n',
            '# .. note:: This event is rate-limited (one per second and\n'
            '#    device), except if action is "stop".\n'),
         "docs/devel/event-throttle.rst": lambda t: t + "BLOCK_IO_ERROR\n--------------\n"})
    repository.commit(
        "monitor: exempt stop events, not report events",
        {"monitor/monitor.c": lambda t: _replace(t, BROKEN_ACTION, FIXED_ACTION)})


# --------------------------------------------------------------- mail as it arrives

def messages(mbox_text: str) -> List[Message]:
    """The messages of `git format-patch --stdout` output, in order (split at git's own
    separator line, as `git am` does: a body line "From ..." is no separator)."""
    chunks = re.split(r"^From [0-9a-f]{40} Mon Sep 17 00:00:00 2001\n", mbox_text,
                      flags=re.MULTILINE)[1:]
    return [email.message_from_bytes(c.encode(), policy=email.policy.compat32) for c in chunks]


def reencoded(message: Message, encoder: Callable[[Message], None]) -> Message:
    """The message as a mail client sends it with another transfer encoding
    (encoders.encode_quopri: quoted-printable; encoders.encode_base64)."""
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    del message["Content-Transfer-Encoding"]
    message.set_payload(payload)
    encoder(message)
    return message


def as_version(message: Message, version: int) -> Message:
    """The same patch as sent in version @version of the series."""
    copy = email.message_from_bytes(message.as_bytes(), policy=email.policy.compat32)
    copy.replace_header("Subject", str(message["Subject"]).replace("[PATCH ",
                                                                  f"[PATCH v{version} "))
    return copy


def reply(to: Message, text: str) -> Message:
    """A reviewer's reply quoting a patch: it contains diff lines, but it is no patch."""
    quoted = "\n".join("> " + line for line in str(to.get_payload()).splitlines()[:30])
    return email.message_from_string(
        f"From: Reviewer <reviewer@example.org>\nDate: Wed, 4 Mar 2026 09:00:00 +0100\n"
        f"Subject: Re: {to['Subject']}\nIn-Reply-To: {to['Message-Id']}\n"
        f"Message-Id: <reply-{len(text)}@example.org>\n\n{quoted}\n\n{text}\n"
        "Something like this instead?\n\n--- a/monitor/monitor.c\n+++ b/monitor/monitor.c\n"
        "@@ -1 +1 @@\n-x\n+y\n", policy=email.policy.compat32)


def write_mbox(path: Path, items: Sequence[Message]) -> Path:
    """An mbox as a list archive exports it (body "From " lines escaped)."""
    box = mailbox.mbox(str(path))
    for item in items:
        box.add(item)
    box.flush()
    box.close()
    return path


def unsupported_construct(repository: Repository) -> None:
    """A loop in the hash: the proofs do not translate it (UNKNOWN, never a pass)."""
    repository.commit(
        "monitor: mix a loop into the throttle hash",
        {"monitor/monitor.c": lambda t: _insert_before(t, HASH_ANCHOR, UNSUPPORTED_LOOP)})


def documentation_only(repository: Repository) -> None:
    """A patch with no throttle code at all."""
    repository.commit("docs: event throttling",
                      {"docs/devel/event-throttle.rst": lambda t: t + "Throttling\n"})


def five_patch_files(qemu_tree: Path, where: Path) -> tuple[Repository, Path]:
    """The 5-patch series in a repository under @where, as git format-patch -o writes it
    (one file per message, a cover letter with its subject): the repository, the files."""
    repository = base_repository(qemu_tree, where / "qemu")
    five_patch_series(repository)
    repository.git("format-patch", "-q", "--cover-letter", "--thread=shallow", "-o",
                   str(where / "patches"), "base..HEAD")
    cover = where / "patches" / "0000-cover-letter.patch"
    cover.write_text(cover.read_text().replace("*** SUBJECT HERE ***",
                                               "monitor: tidy the stop exemption"))
    return repository, where / "patches"


def export(repository: Repository, revision: str, where: Path) -> Path:
    """monitor/ and qapi/ of @revision, as a tree under @where."""
    where.mkdir()
    archive = subprocess.run(["git", "-C", str(repository.path), "archive", revision,
                              "monitor", "qapi"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


REPORT_SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "report.schema.json"


def validate_report(report: Dict[str, Any]) -> None:
    """A JSON report against docs/report.schema.json."""
    jsonschema.Draft202012Validator(json.loads(REPORT_SCHEMA.read_text())).validate(report)

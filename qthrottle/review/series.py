"""A patch series the way it reaches a reviewer: an mbox, a directory of .patch files, or one
patch.

An mbox is what `git format-patch --stdout`, `git send-email`, a list archive's export and
`b4 am` (its .mbx) give; git format-patch -o gives a directory of one-message files. Each
message is read with Python's `mailbox` and `email` modules, so MIME transfer encodings
(quoted-printable, base64, 8-bit) and header encodings are decoded as a mail client would.
An mbox escapes a body line starting with "From " as ">From " (mboxo; mboxrd escapes
">From " too, as ">>From "): the escape is undone on every line that starts with ">"s and
"From ", which no diff line does, so the patches are exact either way. An mboxo that
left such a line unescaped (git format-patch does) splits a message in two at it: a piece
with no header is joined back to the message before it.

Subjects follow git's conventions: "[PATCH v2 3/5] monitor: ...", "[RFC PATCH 0/3]",
"Re: [PATCH 2/3] ...", tags such as "[Qemu-devel]" or "[PATCH for-10.1 v3 02/10]". The
cover letter (0/N), replies ("Re:") and messages without a diff are skipped and listed;
when several versions of a series are in the mbox, the newest is reviewed and the others
are listed as superseded. Patches are ordered by their number, not by mailbox order.
"""
from __future__ import annotations

import email
import email.policy
import mailbox
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from qthrottle.core import read_input
from qthrottle.review.patches import FilePatch, PatchError, is_patch, split_patch

PATCH_SUFFIXES = (".patch", ".diff", ".eml", ".mbx", ".mbox")
_REPLY = re.compile(r"^\s*(?:re|aw|sv|antw|odp)\s*:", re.IGNORECASE)
_PREFIXES = re.compile(r"^\s*(?:(?:re|fwd?|aw|sv)\s*:\s*)*((?:\[[^\]]*\]\s*)*)(.*)$",
                       re.IGNORECASE | re.DOTALL)
_NUMBER = re.compile(r"^(\d+)/(\d+)$")
_VERSION = re.compile(r"^v(\d+)$", re.IGNORECASE)
_ESCAPED_FROM = re.compile(r"^>(>*From )", re.MULTILINE)


class SeriesError(PatchError):
    """SERIES is not an mbox, a patch or a directory of patches, or holds no usable series."""


@dataclass(frozen=True)
class Subject:
    """What a patch subject says: "[RFC PATCH v2 3/5] monitor: x"."""

    text: str  # as sent, decoded
    title: str  # "monitor: x"
    number: Optional[int]  # 3; None when the subject has no M/N
    total: Optional[int]  # 5
    version: int  # 2; 1 when not given
    rfc: bool
    reply: bool  # "Re: ..."

    @staticmethod
    def parse(text: str) -> Subject:
        text = " ".join(text.split())
        match = _PREFIXES.match(text)
        assert match is not None  # every part of the pattern is optional
        tags = " ".join(re.findall(r"\[([^\]]*)\]", match.group(1))).replace(",", " ").split()
        number = total = None
        version, rfc = 1, False
        for tag in tags:
            found = _NUMBER.match(tag)
            if found:
                number, total = int(found.group(1)), int(found.group(2))
            elif _VERSION.match(tag):
                version = int(tag[1:])
            elif tag.upper() == "RFC":
                rfc = True
        return Subject(text, match.group(2).strip(), number, total, version, rfc,
                       _REPLY.match(text) is not None)


@dataclass(frozen=True)
class Mail:
    """One message of the series as the reviewer received it."""

    subject: Subject
    author: str  # the From header
    date: str
    message_id: str
    references: str  # the References header (a reply's thread)
    body: str  # the decoded text body (commit message and diff)
    source: str  # "series.mbx, message 3" / "0002-x.patch"


@dataclass(frozen=True)
class SeriesPatch:
    """A patch of the series, in series order."""

    mail: Mail
    number: int  # M of [PATCH M/N]
    total: int  # N
    sections: Tuple[FilePatch, ...]  # per file, as split_patch gives them

    @property
    def label(self) -> str:
        """'patch 2/3'."""
        return f"patch {self.number}/{self.total}"

    @property
    def title(self) -> str:
        return self.mail.subject.title or self.mail.source

    @property
    def throttle_files(self) -> List[str]:
        return [s.path for s in self.sections if s.throttle_code]

    @property
    def other_files(self) -> List[str]:
        """Files outside monitor/ and qapi/: not throttle code, not applied."""
        return [s.path for s in self.sections if not s.throttle_code]


@dataclass(frozen=True)
class Skipped:
    """A message that is not a patch to review, and why."""

    source: str
    subject: str
    why: str  # "cover letter", "reply", "no diff", "superseded by v3"


@dataclass(frozen=True)
class Series:
    path: Path
    patches: Tuple[SeriesPatch, ...]
    skipped: Tuple[Skipped, ...] = ()
    cover: Optional[Mail] = None
    version: int = 1
    rfc: bool = False

    @property
    def name(self) -> str:
        if self.cover is not None:
            return self.cover.subject.text
        if len(self.patches) == 1:
            return self.patches[0].mail.subject.text or self.path.name
        return f"{self.path.name} ({len(self.patches)} patches)"


# ------------------------------------------------------------------ reading

def read_series(path: Path) -> Series:
    """The patches of SERIES in series order; SeriesError if it holds none."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in PATCH_SUFFIXES)
        if not files:
            raise SeriesError(f"{path}: a directory without .patch files (as "
                              "`git format-patch -o DIR` writes them)")
        mails = [mail for file in files for mail in _read_file(file, file.name)]
    elif path.is_file():
        mails = _read_file(path, path.name)
    else:
        raise SeriesError(f"{path}: no such file or directory")
    return _ordered(path, mails)


def _read_file(path: Path, name: str) -> List[Mail]:
    try:
        data = read_input(path, "a patch series")
    except OSError as error:
        raise SeriesError(f"{path}: cannot read it: {error.strerror}") from None
    if data.lstrip(b"\r\n").startswith(b"From "):
        return _read_mbox(path, name)
    message = email.message_from_bytes(data, policy=email.policy.default)
    if message["subject"] is not None and (message["from"] is not None
                                           or message["message-id"] is not None):
        return [_mail(message, name, from_mbox=False)]
    text = data.decode("utf-8", errors="replace")
    if split_patch(text):
        return [Mail(Subject.parse(""), "", "", "", "", text, name)]
    raise SeriesError(f"{path}: not an mbox, a mail or a patch (no unified diff in it)")


def _read_mbox(path: Path, name: str) -> List[Mail]:
    box = mailbox.mbox(str(path), create=False)
    raw: List[bytes] = []
    try:
        for key in box.iterkeys():
            data = box.get_bytes(key)
            if raw and not email.message_from_bytes(data).keys():
                # A body line "From ..." that the writer did not escape split the message.
                raw[-1] += box.get_bytes(key, from_=True)
            else:
                raw.append(data)
    finally:
        box.close()
    return [_mail(email.message_from_bytes(data, policy=email.policy.default),
                  f"{name}, message {number}", from_mbox=True)
            for number, data in enumerate(raw, 1)]


def _mail(message: Message, source: str, from_mbox: bool) -> Mail:
    body = _text_body(message, source)
    if from_mbox:
        body = _ESCAPED_FROM.sub(r"\1", body)
    return Mail(Subject.parse(str(message["subject"] or "")), str(message["from"] or ""),
                str(message["date"] or ""), str(message["message-id"] or "").strip(),
                str(message["references"] or ""), body, source)


def _text_body(message: Message, source: str) -> str:
    """The text parts (inline or attached patches), transfer encoding and charset undone."""
    parts = []
    for part in message.walk():
        if part.is_multipart() or part.get_content_maintype() != "text" or \
                part.get_content_subtype() not in ("plain", "x-patch", "x-diff", "x-csrc"):
            continue
        try:
            content = part.get_content() if isinstance(part, EmailMessage) else None
        except (LookupError, UnicodeDecodeError):  # an unknown or lying charset
            content = None
        if not isinstance(content, str):
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                raise SeriesError(f"{source}: cannot decode its body")
            content = payload.decode("utf-8", errors="replace")
        parts.append(content)
    return "\n".join(parts)


# ------------------------------------------------------------------ ordering

def _ordered(path: Path, mails: Sequence[Mail]) -> Series:
    skipped: List[Skipped] = []
    cover: Optional[Mail] = None
    candidates: List[Tuple[Mail, Tuple[FilePatch, ...]]] = []
    for mail in mails:
        subject = mail.subject
        if subject.reply:
            skipped.append(Skipped(mail.source, subject.text, "reply"))
        elif subject.number == 0:
            skipped.append(Skipped(mail.source, subject.text, "cover letter"))
            cover = mail if cover is None or subject.version >= cover.subject.version else cover
        else:
            sections = tuple(split_patch(mail.body))
            if sections:
                candidates.append((mail, sections))
            else:
                skipped.append(Skipped(mail.source, subject.text, "no diff"))
    if not candidates:
        kinds = ", ".join(sorted({s.why for s in skipped})) or "nothing"
        raise SeriesError(f"{path}: no patch in it ({len(mails)} message(s): {kinds})")
    newest = max(mail.subject.version for mail, _ in candidates)
    for mail, _ in candidates:
        if mail.subject.version != newest:
            skipped.append(Skipped(mail.source, mail.subject.text, f"superseded by v{newest}"))
    current = [(m, s) for m, s in candidates if m.subject.version == newest]
    if cover is not None and cover.subject.version != newest:
        cover = None
    patches = _numbered(path, current)
    return Series(path, patches, tuple(skipped), cover, newest,
                  any(m.subject.rfc for m, _ in current))


def _numbered(path: Path, current: Sequence[Tuple[Mail, Tuple[FilePatch, ...]]]
              ) -> Tuple[SeriesPatch, ...]:
    numbered = [(m, s) for m, s in current if m.subject.number is not None]
    if not numbered:  # [PATCH] subjects or plain diffs: the order they were read in
        return tuple(SeriesPatch(m, n, len(current), s) for n, (m, s) in enumerate(current, 1))
    if len(numbered) != len(current):
        lone = next(m for m, _ in current if m.subject.number is None)
        raise SeriesError(f"{path}: numbered patches and an unnumbered one ({lone.source}: "
                          f"{lone.subject.text or 'no subject'}); give one series")
    by_number: Dict[int, Tuple[Mail, Tuple[FilePatch, ...]]] = {}
    totals = {m.subject.total for m, _ in numbered}
    for mail, sections in numbered:
        number = mail.subject.number
        assert number is not None
        if number in by_number:
            raise SeriesError(f"{path}: two patches numbered {number} "
                              f"({by_number[number][0].source} and {mail.source})")
        by_number[number] = (mail, sections)
    total = max(t or 0 for t in totals)
    missing = [n for n in range(1, total + 1) if n not in by_number]
    if len(totals) > 1 or missing:
        shown = ", ".join(f"{n}/{total}" for n in missing) or "(totals differ)"
        raise SeriesError(f"{path}: the series is incomplete: patch {shown} missing")
    return tuple(SeriesPatch(by_number[n][0], n, total, by_number[n][1])
                 for n in sorted(by_number))


def is_series(path: Path) -> bool:
    """A patch, a mail or an mbox holding patches, or a directory of .patch files (not a
    QEMU tree, not a monitor.c)."""
    if path.is_dir():
        return not (path / "monitor").is_dir() and any(
            p.is_file() and p.suffix in PATCH_SUFFIXES for p in path.iterdir())
    if not path.is_file():
        return False
    if path.suffix in PATCH_SUFFIXES:
        return True
    with path.open("rb") as file:
        head = file.read(4096)
    return head.lstrip(b"\r\n").startswith(b"From ") or is_patch(path)

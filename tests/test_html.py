"""Issue 18: counterexamples you can look at. `explore --html` and `diff --html` write one
self-contained HTML page of timelines; Debian's Chromium, headless, loads the pages of
per-device, stop-irreflexive (with its heap-use-after-free) and the per-device ->
stop-bypass diff, and the tests assert on the DOM, on screenshots, on the JSON a
focused mark shows, on the page without JavaScript, and on the layout from 2 to 40
steps. The pages and screenshots stay in pytest's temporary directory (html0/)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from qthrottle.cli import main
from qthrottle.harness.target import resolve
from qthrottle.model.invariants import INVARIANTS
from qthrottle.model.timeline import Advance, AdvanceToNext, Operation, Queue
from qthrottle.review import html
from qthrottle.review.counterexample import replay
from qthrottle.review.target_policy import open_subject
from qthrottle.review.timeline_view import DROPPED, EMITTED, HELD, QUEUED, Section
from qthrottle.review.timeline_view import Page as HtmlPage
from qthrottle.review.views import replay_timeline

SEED = "20261125"
SECOND = 1_000_000_000
# What the machine's closed network demands of Chromium (no background connections).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def disk(path: str, action: str, reason: str = "reason-a") -> Queue:
    return Queue("BLOCK_IO_ERROR", {"qom-path": f"/machine/peripheral/{path}", "device": path,
                                    "operation": "read", "action": action, "reason": reason})


# ------------------------------------------------------------------ the pages

@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the pages and their screenshots go (html0/ in pytest's temporary directory)."""
    return tmp_path_factory.mktemp("html")


@pytest.fixture(scope="module")
def pages(out: Path, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """The three pages of the acceptance list, written by the command line."""
    repro = tmp_path_factory.mktemp("repro")
    written = {"per-device": out / "per-device.html",
               "stop-irreflexive": out / "stop-irreflexive.html",
               "diff": out / "diff-per-device-stop-bypass.html"}
    assert main(["explore", "per-device", "--invariant", "4", "--seed", SEED,
                 "--output", str(repro), "--html", str(written["per-device"])]) == 1
    assert main(["explore", "stop-irreflexive", "--seed", SEED, "--output", str(repro),
                 "--html", str(written["stop-irreflexive"])]) == 1
    assert main(["diff", "per-device", "stop-bypass", "--seed", SEED, "--timelines", "100",
                 "--html", str(written["diff"])]) == 0
    return written


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    """Debian's Chromium, headless; Playwright gives it a fresh profile and removes it."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), headless=True,
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Opened:
    """A page loaded offline: every request that is not the file itself is refused and
    recorded."""

    def __init__(self, browser: Browser, path: Path, javascript: bool = True) -> None:
        self.context = browser.new_context(java_script_enabled=javascript,
                                           viewport={"width": 1400, "height": 900})
        self.requests: List[str] = []

        def refuse(route: Any) -> None:
            url = route.request.url
            if url != path.as_uri():
                self.requests.append(url)
                route.abort()
            else:
                route.continue_()

        self.context.route("**/*", refuse)
        self.page: Page = self.context.new_page()
        self.page.goto(path.as_uri())

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Any]:
    opened: List[Opened] = []

    def load(path: Path, javascript: bool = True) -> Page:
        page = Opened(browser, path, javascript)
        opened.append(page)
        return page.page

    yield load
    for page in opened:
        assert page.requests == [], f"the page asked the network for {page.requests}"
        page.close()


def marks(page: Page, section: str) -> List[Dict[str, str]]:
    """Every mark of a section's picture, with its data attributes and text alternative."""
    found: List[Dict[str, str]] = page.eval_on_selector_all(
        f"#{section} a.mark", """nodes => nodes.map(n => ({
            kind: n.dataset.kind, step: n.dataset.step, lane: n.dataset.lane,
            label: n.dataset.label, side: n.dataset.side || '', qmp: n.dataset.qmp,
            text: n.getAttribute('aria-label'),
            shape: n.querySelector('.shape').tagName,
            struck: n.querySelector('.strike') !== null}))""")
    return found


def highlights(page: Page, section: str) -> List[Tuple[str, str, str]]:
    found: List[Tuple[str, str, str]] = page.eval_on_selector_all(
        f"#{section} g.highlight", "nodes => nodes.map(n => [n.dataset.kind, n.dataset.step, "
        "n.querySelector('.highlight-title').textContent])")
    return found


def not_blank(page: Page, selector: str, path: Path) -> None:
    """A screenshot of @selector that shows a picture: not one colour, with both sides'
    colours in it."""
    page.locator(selector).first.screenshot(path=str(path))
    image = Image.open(path).convert("RGB")
    counts = image.getcolors(maxcolors=image.width * image.height) or []
    inked = sum(n for n, rgb in counts if sum(rgb) < 600) / (image.width * image.height)
    assert inked > 0.01, f"{path}: {inked:.1%} of the pixels are not near white"
    colours = {html.COLOURS[0], html.COLOURS[1]}
    seen = {"#{:02x}{:02x}{:02x}".format(*rgb) for _, rgb in counts}
    assert colours <= seen, f"{path}: the sides' colours {colours} are not in the picture"


def shows_json_on_focus(page: Page, selector: str, expected: str) -> None:
    """Focusing a mark (the keyboard) and hovering it (the mouse) show its QMP JSON."""
    tip = page.locator("#qmp-tip")
    assert tip.is_hidden()
    page.focus(selector)
    assert tip.is_visible() and expected in tip.inner_text()
    page.evaluate("document.activeElement.blur()")
    assert tip.is_hidden()
    page.hover(selector)
    assert tip.is_visible() and expected in tip.inner_text()


# ------------------------------------------------------------------ the three pages

def test_per_device_shows_the_stop_event_held_back_by_the_c(
        pages: Dict[str, Path], open_page: Any) -> None:
    page = open_page(pages["per-device"])
    lanes = page.eval_on_selector_all("#invariant-4 g.lane", "n => n.map(l => [l.dataset.title, "
                                      "l.dataset.key])")
    assert lanes == [["BLOCK_IO_ERROR", 'qom-path = "/machine/peripheral/disk0"']]
    found = {(m["kind"], m["side"], m["label"]): m for m in marks(page, "invariant-4")}
    assert set(found) == {(QUEUED, "", "1"), (QUEUED, "", "2"), (EMITTED, "C", "1"),
                          (HELD, "C", "2"), (EMITTED, "model", "1"), (EMITTED, "model", "2")}
    assert '"action": "stop"' in found[(QUEUED, "", "2")]["qmp"]
    assert found[(HELD, "C", "2")]["text"].startswith("#2 on C: not emitted by the end")
    # Shapes tell the sides apart without colour.
    assert found[(EMITTED, "C", "1")]["shape"] == "circle"
    assert found[(EMITTED, "model", "1")]["shape"] == "rect"
    assert all(m["text"] for m in found.values())
    assert highlights(page, "invariant-4") == [
        ["divergence", "2", "the C and the model part ways"],
        ["violation", "2", "invariant 4 broken"]]
    title = page.eval_on_selector("#invariant-4 g.highlight[data-kind=violation] title",
                                  "n => n.textContent")
    assert INVARIANTS[4] in title and "stop event not emitted at once" in title
    window = page.eval_on_selector("#invariant-4 g.window", "n => [n.dataset.start, "
                                   "n.dataset.end]")
    assert window == ["0", str(SECOND)]
    assert page.locator("#invariant-4-step-2.focus").count() == 1
    assert "throttle window of its key was open (0 ns to 1 s)" in page.inner_text(
        "#invariant-4 ul.story")
    assert "pytest reproducer: " in page.inner_text("#invariant-4")
    shows_json_on_focus(page, '#invariant-4 a.mark[data-kind=queued][data-step="2"]',
                        '"action": "stop"')
    not_blank(page, "#invariant-4 .picture", pages["per-device"].with_suffix(".png"))


def test_stop_irreflexive_shows_the_use_after_free_and_every_invariant_it_breaks(
        pages: Dict[str, Path], open_page: Any) -> None:
    page = open_page(pages["stop-irreflexive"])
    sections = page.eval_on_selector_all("section", "n => n.map(s => s.id)")
    assert sections == ["invariant-1", "invariant-3", "invariant-4", "invariant-8"]
    # The use-after-free: the stop event opened a record the timer freed but left in the
    # table; the next lookup of its key (a queue, or the removal a timer does) reads it.
    # The C crashes at the last step, highlighted as the violation, its cell saying so.
    violations = [h for h in highlights(page, "invariant-8") if h[0] == "violation"]
    assert [h[2] for h in violations] == ["invariant 8 broken"]
    last = violations[0][1]
    uaf = marks(page, "invariant-8")
    assert max(int(m["step"]) for m in uaf) <= int(last)
    assert "CRASH: heap-use-after-free" in page.inner_text("#invariant-8")
    # Each event the C had not emitted when it crashed is struck, saying why.
    crashed = [m for m in uaf if m["kind"] == DROPPED and m["side"] == "C"]
    assert all(m["struck"] and "crashed at step " + last in m["text"]
               and "heap-use-after-free" in m["text"] for m in crashed)
    assert "SUMMARY: AddressSanitizer: heap-use-after-free" in page.inner_text("#invariant-8")
    assert page.locator("#invariant-8 text.table-size.crash").count() == 1
    # The model never throttles a stop event: from there on it is not compared.
    assert page.locator("#invariant-8 g.silent").count() >= 1
    # Invariant 1, from z3: one record compared with itself.
    compared = marks(page, "invariant-1")
    assert [(m["kind"], m["label"]) for m in compared] == [("compared", "a=b")]
    assert ["violation", "1", "invariant 1 broken"] in highlights(page, "invariant-1")
    status = page.inner_text("table.status")
    assert re.search(r"8 no memory error or reference leak\s+✗ FALSIFIED \(stateful\)", status)
    not_blank(page, "#invariant-8 .picture", pages["stop-irreflexive"].with_suffix(".png"))


def test_diff_shows_old_and_new_side_by_side(pages: Dict[str, Path], open_page: Any) -> None:
    page = open_page(pages["diff"])
    section = "dynamic-diff"
    found = {(m["kind"], m["side"], m["label"]) for m in marks(page, section)}
    assert {(HELD, "old", "2"), (EMITTED, "new", "2"), (EMITTED, "old", "1"),
            (EMITTED, "new", "1")} <= found
    assert highlights(page, section) == [["divergence", "2", "OLD and NEW part ways"],
                                         ["violation", "2", "OLD breaks invariant 4"]]
    # The minimal divergence is two stop events of one disk: OLD's C holds the second
    # back, NEW's emits both; the reference model, whose windows the picture draws with
    # each version's rates and keys, never throttles a stop event: no window.
    queued = [m for m in marks(page, section) if m["kind"] == QUEUED]
    assert {m["label"] for m in queued} == {"1", "2"}
    assert all('"action": "stop"' in m["qmp"] for m in queued), queued
    assert page.eval_on_selector_all(f"#{section} g.window", "n => n.length") == 0
    assert "BLOCK_IO_ERROR with action=stop: throttled -> never throttled" in page.inner_text(
        f"#{section}")
    assert "replay OLD" in page.inner_text(f"#{section}")
    not_blank(page, f"#{section} .picture", pages["diff"].with_suffix(".png"))


def test_pages_read_without_javascript(pages: Dict[str, Path], open_page: Any) -> None:
    page = open_page(pages["per-device"], javascript=False)
    assert page.locator("#invariant-4 a.mark").count() == 6
    assert page.locator("#invariant-4 table.steps tbody tr").count() == 2
    title = page.eval_on_selector('#invariant-4 a.mark[data-kind=queued][data-step="2"] title',
                                  "n => n.textContent")
    assert '"action": "stop"' in title  # the browser's own tooltip, no script needed
    page.focus('#invariant-4 a.mark[data-kind=queued][data-step="2"]')
    assert page.locator("#qmp-tip").is_hidden()
    page.click('#invariant-4 a.mark[data-kind=queued][data-step="2"]')
    assert page.url.endswith("#invariant-4-step-2")  # a mark links to its step


def test_pages_fetch_nothing() -> None:
    """Nothing outside the file: no URL in an attribute, no @import or url() but #ids."""
    page = html.render(HtmlPage("t", (), (), (), "exit 0"))
    assert not re.search(r"(src|href)=\"(?!#)", page)
    assert not re.search(r"url\((?!#)|@import|@font-face", page)


# ------------------------------------------------------------------ the layout

def _page_of(spec: str, invariant: int, timeline: List[Operation], path: Path) -> Path:
    with open_subject(resolve(spec)) as subject:
        replayed = replay(subject, invariant, timeline)
        view = replay_timeline(replayed, subject.policy, spec)
    html.write(path, HtmlPage(f"{len(timeline)} steps", (), (), (
        Section("timeline", f"{len(timeline)} steps", "layout", (), view),), "exit 0"))
    return path


FORTY = [op for n in range(10) for op in (
    disk(f"disk{n % 3}", ("report", "ignore", "stop")[n % 3], f"reason-{n}"),
    disk(f"disk{n % 2}", "report", f"again-{n}"),
    Advance((1, SECOND // 2, SECOND - 1, SECOND, SECOND + 1)[n % 5]),
    AdvanceToNext() if n % 2 else Advance(2 * SECOND))]


@pytest.mark.parametrize("timeline", [FORTY[:2], FORTY], ids=["2-steps", "40-steps"])
def test_layout_from_2_to_40_steps(timeline: List[Operation], open_page: Any,
                                   out: Path) -> None:
    """Marks keep their size and never overlap in a row, time labels never overlap, and a
    long timeline scrolls in its strip instead of widening the page."""
    path = _page_of("stop-bypass", 5, timeline, out / f"layout-{len(timeline)}-steps.html")
    page = open_page(path)
    boxes = page.eval_on_selector_all("#timeline a.mark .shape", """nodes => nodes.map(n => {
        const b = n.getBoundingClientRect();
        return [n.closest('a').dataset.lane, n.closest('a').dataset.side || 'queued',
                b.left, b.right, b.width]; })""")
    assert len(boxes) >= len([op for op in timeline if isinstance(op, Queue)]) * 3
    assert min(b[4] for b in boxes) >= 20
    rows: Dict[Tuple[str, str], List[Tuple[float, float]]] = {}
    for lane, side, left, right, _ in boxes:
        rows.setdefault((lane, side), []).append((left, right))
    for spans in rows.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
    ticks = page.eval_on_selector_all("#timeline text.tick", """nodes => nodes.map(n => {
        const b = n.getBoundingClientRect(); return [b.top, b.left, b.right]; })""")
    by_row: Dict[float, List[Tuple[float, float]]] = {}
    for top, left, right in ticks:
        by_row.setdefault(round(top), []).append((left, right))
    for spans in by_row.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
    page_width = page.evaluate("document.documentElement.scrollWidth")
    assert page_width <= 1400
    if len(timeline) == 40:
        assert page.evaluate("(() => { const s = document.querySelector('#timeline .scroll');"
                             " return s.scrollWidth > s.clientWidth; })()")
    not_blank(page, "#timeline .picture", path.with_suffix(".png"))


# ------------------------------------------------------------------ without a browser

def test_replaced_event_comes_from_the_model() -> None:
    """Three events of one key in one window: the model drops #2 for #3 (newest wins) and
    emits #3 at the deadline; the picture says so from the model's own run."""
    timeline: List[Operation] = [disk("disk0", "report"), disk("disk0", "report", "reason-b"),
                                 disk("disk0", "report", "reason-c"), Advance(SECOND)]
    with open_subject(resolve("stop-bypass")) as subject:
        view = replay_timeline(replay(subject, 5, timeline), subject.policy, "stop-bypass")
    found = {(m.kind, m.side, m.label): m for m in view.marks}
    assert found[(DROPPED, 1, "2")].text == (
        "#2 on model: replaced by #3 at 0 ns: dropped, the newest wins")
    assert found[(HELD, 0, "2")].text.startswith("#2 on C: not emitted")
    assert found[(EMITTED, 0, "3")].t == found[(EMITTED, 1, "3")].t == SECOND
    assert "1 s after it was queued at 0 ns" in found[(EMITTED, 1, "3")].text
    assert [(w.start, w.end) for w in view.windows] == [(0, SECOND), (SECOND, 2 * SECOND)]
    assert view.highlights == ()


def test_event_queued_into_a_crash_is_struck_with_the_sanitizer_words() -> None:
    """stop-irreflexive: the stop event's record is freed by its timer but left in the
    table; the next event of its key crashes the C in the lookup, before any emission."""
    timeline: List[Operation] = [disk("disk0", "stop"), AdvanceToNext(),
                                 disk("disk0", "ignore")]
    with open_subject(resolve("stop-irreflexive")) as subject:
        replayed = replay(subject, 8, timeline)
        view = replay_timeline(replayed, subject.policy, "stop-irreflexive")
    assert replayed.confirmed
    struck = [m for m in view.marks if m.kind == DROPPED and m.side == 0]
    assert [(m.label, m.step) for m in struck] == [("3", 3)]
    assert struck[0].text.startswith("#3 on C: never emitted: C crashed at step 3 "
                                      "(heap-use-after-free in qapi_event_throttle_equal")
    assert [(h.kind, h.step) for h in view.highlights if h.kind == "violation"] == [
        ("violation", 3)]


def test_html_file_is_checked_before_the_run(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-dir" / "page.html"
    for argv in (["explore", "per-device", "--output", str(tmp_path / "repro")],
                 ["diff", "per-device", "stop-bypass"]):
        assert main([*argv, "--html", str(missing)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"qthrottle: error: --html {missing}: cannot be written: "
                              "No such file or directory")
    assert not (tmp_path / "repro").exists()
    assert main(["explore", "per-device", "--html", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_write_leaves_the_file_whole_or_absent(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    html.write(path, HtmlPage("t", ("a fact",), (), (), "exit 0"))
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


def test_dev_check_installs_debians_chromium() -> None:
    """The README's claim: ./dev check installs chromium (./dev verify does not need it)."""
    dev = (Path(__file__).resolve().parent.parent / "dev").read_text()
    commands = dict(re.findall(r"\n    (\w+)\)\n(.*?);;", dev, re.S))
    assert "install_debian_packages for-check" in commands["check"]
    assert "for-check" not in commands["verify"]
    assert re.search(r'= for-check \]; then\n(.*\n)*? *command -v chromium >/dev/null '
                     r'\|\| missing\+=\(chromium\)', dev)

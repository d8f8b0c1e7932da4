"""The consoles in a real browser (system Chromium) against the real web server (uvicorn, for WebSockets).

The VNC console must show the guest's own screen: the noVNC canvas is compared pixel by pixel with
libvirt's screenshot of the same guest. The serial console must answer `echo hello` typed into xterm.js.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ADMIN_PASSWORD, RESULTS, VIEWPORT

pytestmark = [pytest.mark.browser, pytest.mark.qemu]
SHOTS = RESULTS / "pages"


@pytest.fixture
def live_page(browser, live_stack, admin):  # type: ignore[no-untyped-def]
    """A logged-in browser page on the live ASGI server; a failing test leaves a screenshot."""
    context = browser.new_context(viewport=VIEWPORT, base_url=live_stack.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(admin.username)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/domains/"))
    yield page
    SHOTS.mkdir(parents=True, exist_ok=True)
    context.close()


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


# The canvas's framebuffer and libvirt's screenshot of the same guest (decoded by the browser itself).
PIXELS = """async (url) => {
  const fb = window.webvirtConsole.rfb.getImageData();
  const blob = await (await fetch(url, { cache: "no-store" })).blob();
  const bitmap = await createImageBitmap(blob);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const ref = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  return { width: fb.width, height: fb.height, refWidth: ref.width, refHeight: ref.height,
           canvas: Array.from(fb.data), reference: Array.from(ref.data) };
}"""


@pytest.mark.django_db(transaction=True)
def test_the_vnc_console_shows_the_guests_screen(live_page, qemu_domain, tiny_guest):  # type: ignore[no-untyped-def]
    page = live_page
    page.goto(f"/domains/{qemu_domain.pk}/")
    expect(page.locator("#domain-screenshot")).to_be_visible()
    shot(page, "domain-with-screenshot")
    page.get_by_role("link", name="Console", exact=True).click()
    expect(page.locator("#console-status")).to_have_text("connected")
    page.wait_for_timeout(1500)  # let the first full frame arrive
    shot(page, "console-vnc")

    pixels = page.evaluate(PIXELS, f"/consoles/{qemu_domain.pk}/screenshot.png")
    width, height = pixels["width"], pixels["height"]
    assert (width, height) == (pixels["refWidth"], pixels["refHeight"])
    rgba, reference = pixels["canvas"], pixels["reference"]
    same = lit = total = 0
    for y in range(0, min(height, 120)):  # the banner and the first lines of text
        for x in range(0, width, 2):
            i = 4 * (y * width + x)
            total += 1
            same += sum(abs(rgba[i + c] - reference[i + c]) for c in range(3)) < 30
            lit += rgba[i] + rgba[i + 1] + rgba[i + 2] > 150
    assert lit > 200, "the console shows no text"
    assert same / total > 0.95, f"only {same / total:.0%} of the canvas matches libvirt's screenshot"

    # Controls: Ctrl+Alt+Del and key combinations are enabled once connected; disconnect says so.
    expect(page.get_by_role("button", name="Ctrl+Alt+Del")).to_be_enabled()
    page.get_by_role("button", name="Disconnect").click()
    expect(page.locator("#console-status")).to_have_text("not connected")
    expect(page.locator("#console-msg")).to_have_text("Disconnected.")


@pytest.mark.django_db(transaction=True)
def test_the_serial_console_answers_echo_hello(live_page, qemu_domain):  # type: ignore[no-untyped-def]
    page = live_page
    page.goto(f"/consoles/{qemu_domain.pk}/serial/")
    expect(page.locator("#console-status")).to_have_text("connected")
    page.locator("#terminal").click()
    page.keyboard.press("Enter")
    page.keyboard.type("echo hello")
    page.keyboard.press("Enter")
    lines = """() => {
      const buffer = window.webvirtConsole.term.buffer.active;
      const out = [];
      for (let i = 0; i < buffer.length; i++) out.push(buffer.getLine(i).translateToString(true).trim());
      return out;
    }"""
    page.wait_for_function(f"({lines})().includes('hello')")
    shot(page, "console-serial")
    text = page.evaluate(lines)
    assert any(line.endswith("echo hello") for line in text)


@pytest.mark.django_db(transaction=True)
def test_a_console_of_a_shut_off_domain_says_so(live_page, test_host, make_test_domain):  # type: ignore[no-untyped-def]
    from webvirt.domains.models import Domain
    from webvirt.domains.services import sync_host

    dom = make_test_domain()
    sync_host(test_host)
    row = Domain.objects.get(host=test_host, uuid=dom.UUIDString())
    page = live_page
    page.goto(f"/consoles/{row.pk}/vnc/")
    expect(page.locator("#console-msg")).to_contain_text("is shut off. Start it to use its console.")
    expect(page.get_by_role("button", name="Connect", exact=True)).to_be_disabled()
    shot(page, "console-shut-off")


def serial_log(dom) -> Path:  # type: ignore[no-untyped-def]
    """The file libvirt copies the guest's serial output to (the tiny guest's shell on tty1 can write there)."""
    from lxml import etree

    return Path(etree.fromstring(dom.XMLDesc(0).encode()).find("./devices/serial/log").get("file"))


NEW_SHELL = "WEBVIRT-TTY1-SHELL"  # tests/guest/build.sh: a shell on the guest's screen started


def wait_for_text(page, path: Path, text: str, timeout: float = 30,  # type: ignore[no-untyped-def]
                  count: int = 1) -> None:
    import time

    deadline = time.monotonic() + timeout
    while path.read_text(errors="replace").count(text) < count:
        if time.monotonic() > deadline:
            shot(page, f"failed-waiting-for-{text}")  # what the guest's screen showed instead
            raise AssertionError(f"{text!r} never reached the guest's serial output")
        time.sleep(0.2)


def paste(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("button", name="Paste text…").click()
    page.get_by_label("Text to type").fill(text)
    page.get_by_role("button", name="Type it").click()
    expect(page.locator("#paste-dialog")).not_to_be_visible()


@pytest.mark.django_db(transaction=True)
def test_the_vnc_consoles_controls_reach_the_guest(live_page, qemu_domain, tiny_guest):  # type: ignore[no-untyped-def]
    # The tiny guest runs a root shell on its screen (tty1): what the controls send is typed there,
    # and the shell writes proof to the serial port, whose output libvirt logs to a file.
    page = live_page
    log = serial_log(tiny_guest)
    page.goto(f"/consoles/{qemu_domain.pk}/vnc/")
    expect(page.locator("#console-status")).to_have_text("connected")

    # Paste as keystrokes: capitals, digits and shifted symbols arrive as typed.
    paste(page, "echo Pasted-OK_42 >/dev/ttyS0\n")
    wait_for_text(page, log, "Pasted-OK_42")

    # A key combination: Ctrl+C at the prompt of the guest's screen shell ends it, and the guest's
    # init announces the new one on the serial port.
    shells = log.read_text(errors="replace").count(NEW_SHELL)
    page.get_by_label("Send a key combination").select_option("ctrl+c")
    wait_for_text(page, log, NEW_SHELL, count=shells + 1)

    # Fit to window and full screen.
    assert page.evaluate("window.webvirtConsole.rfb.scaleViewport") is True
    page.get_by_label("Fit to window").uncheck()
    assert page.evaluate("window.webvirtConsole.rfb.scaleViewport") is False
    page.get_by_role("button", name="Full screen").click()
    page.wait_for_function("document.fullscreenElement && document.fullscreenElement.id === 'screen'")
    page.evaluate("document.exitFullscreen()")

    # A dropped connection (not the user's Disconnect) comes back by itself, with a new ticket.
    page.evaluate("window.webvirtConsole.rfb._sock._websocket.close()")
    expect(page.locator("#console-status")).to_have_text("reconnecting…")
    expect(page.locator("#console-status")).to_have_text("connected", timeout=20_000)
    paste(page, "echo after-reconnect >/dev/ttyS0\n")
    wait_for_text(page, log, "after-reconnect")

    # Its own window: the same console, without the site's navigation, connected on its own.
    with page.expect_popup() as popup_info:
        page.get_by_role("button", name="Own window").click()
    popup = popup_info.value
    expect(popup.locator("#console-status")).to_have_text("connected")
    expect(popup.locator(".topbar")).to_be_hidden()
    assert "window=1" in popup.url
    shot(popup, "console-vnc-own-window")
    popup.close()

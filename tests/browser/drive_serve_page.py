#!/usr/bin/env python3
"""The `styleclip serve` page driven in headless Chromium the way a person uses it.

Starts `styleclip serve` on a free loopback port, opens its page in Chromium, clicks into the
neutral and target fields and types into them (real key input through the DevTools protocol),
waits for the global preview, drags the strength and threshold sliders with the mouse, and checks
that the preview image and the channel count change; then runs a global and an optimisation job
from their buttons, and uploads a picture through the file chooser to be inverted. Keeps a
screenshot of the page.

Chromium is driven over --remote-debugging-pipe (the DevTools protocol as NUL-terminated JSON on
file descriptors 3 and 4): no WebSocket library, nothing beyond Python's standard library.

usage: drive_serve_page.py STYLECLIP MODELS WORKDIR SCREENSHOT [CHROMIUM]
With STYLECLIP_SERVE_TOKEN set, the server runs with --token and the page is opened at the
address it prints (the token in its fragment), as a user of a guarded server would.
exit: 0 passed, 1 failed (the reason on stderr), 77 Chromium is not installed (skip).
"""
import base64
import fcntl
import json
import os
import re
import select
import subprocess
import sys
import time


class Browser:
    """Headless Chromium with one page, spoken to through the DevTools pipe."""

    def __init__(self, chromium, profile):
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # High numbers first, so that placing them at 3 and 4 cannot overwrite one another.
        child_in = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 100)
        child_out = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 100)

        def place_pipes():
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-pipe", "--window-size=1300,860", "--user-data-dir=" + profile,
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False,
            preexec_fn=place_pipes)
        for fd in (to_chrome_r, from_chrome_w, child_in, child_out):
            os.close(fd)
        self.write_fd, self.read_fd = to_chrome_w, from_chrome_r
        self.buffer = b""
        self.next_id = 0
        self.session = None
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method, params=None, timeout=60):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self.next_id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer.get("result", {})
            left = deadline - time.time()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise RuntimeError(f"{method}: Chromium did not answer in {timeout} s")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError(f"{method}: Chromium closed the pipe")
            self.buffer += chunk

    def js(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"page script failed: {expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression, what, timeout=60):
        deadline = time.time() + timeout
        # The page may not be there yet (a navigation still under way): not yet, not an error.
        guarded = f"(() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }})()"
        while time.time() < deadline:
            if self.js(guarded):
                return
            time.sleep(0.1)
        status = self.js("document.getElementById('status').textContent")
        raise RuntimeError(f"timed out waiting for {what} (page status: {status!r})")

    def rect(self, element_id):
        return self.js(f"(() => {{ const r = document.getElementById('{element_id}')"
                       ".getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()")

    def mouse(self, kind, x, y):
        params = {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}
        if kind == "mouseMoved":
            params["buttons"] = 1
        self.call("Input.dispatchMouseEvent", params)

    def click(self, element_id):
        x, y, w, h = self.rect(element_id)
        self.mouse("mousePressed", x + w / 2, y + h / 2)
        self.mouse("mouseReleased", x + w / 2, y + h / 2)

    def type_into(self, element_id, text):
        self.click(element_id)
        for ch in text:  # one key at a time, as typed
            self.call("Input.dispatchKeyEvent", {"type": "keyDown", "text": ch, "key": ch})
            self.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": ch})

    def close(self):
        self.proc.kill()
        self.proc.wait()


def main():
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    styleclip, models, work, screenshot = sys.argv[1:5]
    chromium = sys.argv[5] if len(sys.argv) > 5 else "/usr/bin/chromium"
    if not os.path.exists(chromium):
        print("Chromium is not installed (apt install chromium)", file=sys.stderr)
        return 77
    os.makedirs(work, exist_ok=True)
    token = os.environ.get("STYLECLIP_SERVE_TOKEN", "")
    server = subprocess.Popen([styleclip, "serve", "--models", models, "--port", "0",
                               "--out", os.path.join(work, "serve-out")] +
                              (["--token", token] if token else []),
                              stdout=subprocess.PIPE, stderr=open(os.path.join(work, "serve.log"), "w"),
                              text=True)
    browser = None
    try:
        line = server.stdout.readline().strip()
        m = re.match(r"listening on (http://\S+)", line)
        if not m:
            raise RuntimeError(f"serve did not start: {line!r}")
        url = m.group(1)
        browser = Browser(chromium, os.path.join(work, "profile"))
        browser.call("Page.navigate", {"url": url})
        page = url.split("#")[0]  # the page takes the token out of the address bar
        browser.wait_for(f"location.href === {json.dumps(page)} && document.readyState === 'complete'",
                         "the page to load")
        # The page samples seed 0 by itself when the server has no latent yet.
        browser.wait_for("(() => { const i = document.getElementById('before');"
                         " return i.complete && i.naturalWidth > 0; })()", "the seed's picture")
        browser.type_into("neutral", "a shape")
        browser.type_into("target", "a blue shape")
        typed = browser.js("[document.getElementById('neutral').value,"
                           " document.getElementById('target').value]")
        if typed != ["a shape", "a blue shape"]:
            raise RuntimeError(f"typing did not reach the fields: {typed}")
        browser.wait_for("(document.getElementById('after').getAttribute('src') || '')"
                         ".startsWith('data:image/png')", "the first preview")
        first = browser.js("document.getElementById('after').src")
        channels_first = browser.js("document.getElementById('channels').textContent")
        # Drag the strength thumb (α 4.1 of −10…10) with the mouse to near the right end.
        x, y, w, h = browser.rect("strength")
        thumb = x + w * (4.1 + 10) / 20
        browser.mouse("mousePressed", thumb, y + h / 2)
        for step in range(1, 11):
            browser.mouse("mouseMoved", thumb + (x + w * 0.95 - thumb) * step / 10, y + h / 2)
        browser.mouse("mouseReleased", x + w * 0.95, y + h / 2)
        strength = float(browser.js("document.getElementById('strength').value"))
        if not strength > 7:
            raise RuntimeError(f"the drag did not move the slider (strength {strength})")
        browser.wait_for(f"document.getElementById('after').src !== {json.dumps(first)}",
                         "the preview to change after the drag")
        # Then the threshold slider: fewer channels pass a higher β.
        x, y, w, h = browser.rect("threshold")
        at = x + w * 0.15 / 0.4
        browser.mouse("mousePressed", at, y + h / 2)
        browser.mouse("mouseMoved", x + w * 0.6, y + h / 2)
        browser.mouse("mouseReleased", x + w * 0.6, y + h / 2)
        browser.wait_for(f"document.getElementById('channels').textContent !== "
                         f"{json.dumps(channels_first)}", "the channel count to change")
        browser.wait_for("!document.getElementById('status').textContent", "no error shown", 5)
        channels = browser.js("document.getElementById('channels').textContent")
        counts = [int(n) for n in re.findall(r"\d+(?= of)", channels_first + " " + channels)]
        if len(counts) != 2 or not counts[1] < counts[0]:
            raise RuntimeError(f"a higher threshold should pass fewer channels: "
                               f"{channels_first!r} then {channels!r}")
        # The job buttons: save this global edit, and optimise toward the target for 20 steps.
        browser.click("save-global")
        browser.js("document.getElementById('opt-steps').value = ''")
        browser.type_into("opt-steps", "20")
        browser.click("optimize")
        browser.wait_for("document.querySelectorAll('#jobs .job img').length === 2 && "
                         "[...document.querySelectorAll('#jobs .job img')].every(i => i.complete"
                         " && i.naturalWidth > 0)", "both jobs' before/after pictures", 120)
        jobs = browser.js("[...document.querySelectorAll('#jobs .job')].map(j => j.textContent)")
        if len(jobs) != 2 or not all("done" in j for j in jobs):
            raise RuntimeError(f"the jobs did not finish: {jobs}")
        # The picture the README shows: the seed, its preview and the two jobs.
        shot = browser.call("Page.captureScreenshot", {"format": "png"})
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        # A photo from the file chooser: the optimisation's output picture (an aligned 64 px
        # crop), uploaded and inverted with 20 steps; it becomes the chosen latent.
        photos = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(work, "serve-out", "results"))
                  for f in fs if f.endswith(".optimize.png")]
        if not photos:
            raise RuntimeError("the optimisation job wrote no picture to upload")
        document = browser.call("DOM.getDocument")["root"]["nodeId"]
        chooser = browser.call("DOM.querySelector", {"nodeId": document, "selector": "#photo"})
        browser.call("DOM.setFileInputFiles", {"nodeId": chooser["nodeId"], "files": photos[:1]})
        browser.js("document.getElementById('invert-steps').value = ''")
        browser.type_into("invert-steps", "20")
        thumbs = browser.js("document.querySelectorAll('#thumbs img').length")
        browser.click("upload")
        browser.wait_for(f"document.querySelectorAll('#thumbs img').length > {thumbs} && "
                         "[...document.querySelectorAll('#jobs .job')].some(j => "
                         "j.textContent.startsWith('photo done'))", "the photo's inversion", 120)
        browser.wait_for("(document.getElementById('after').getAttribute('src') || '')"
                         ".startsWith('data:image/png') && document.getElementById('before').complete",
                         "the photo's preview")
        chosen = browser.js("document.querySelector('#thumbs img.chosen').title")
        if not chosen.startswith("upload-"):
            raise RuntimeError(f"the inverted photo was not chosen: {chosen!r}")
        print(json.dumps({"url": url, "strength": strength, "channels_before": channels_first,
                          "channels_after": channels, "jobs": jobs, "photo": chosen,
                          "screenshot": screenshot}))
        return 0
    except Exception as e:  # one line for the test's log
        print(f"serve page: {e}", file=sys.stderr)
        return 1
    finally:
        if browser:
            browser.close()
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())

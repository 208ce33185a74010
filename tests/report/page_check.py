#!/usr/bin/env python3
"""Loads a report page in headless Chromium and says what the browser saw.

Chromium runs with --headless --no-sandbox --disable-gpu and a fresh
profile, driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
JSON messages ended by NUL on fds 3 and 4), so nothing but Debian's chromium
and python3 is needed. Printed as one JSON object:

  console_errors  console.error/assert calls, uncaught exceptions, log entries
                  of level error (failed loads, bad SVG attributes)
  network         requests for anything but data:, file: and about: URLs
  load_ms         navigation start to the end of the load event
  opened_ms       navigation start to the second animation frame after load:
                  the page laid out and painted
  charts          per svg.chart: data marks (class "d") and its drawn size
  images          per <img>: loaded, natural and drawn size
  bytes           the page's size

--check exits 1 (after printing) when there are console errors or network
requests, a chart without marks or size, an image that did not decode, or
fewer charts or images than --min-charts / --min-images.
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self, timeout):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if not exe:
            sys.exit("page_check: chromium is not installed (apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix="dp-chromium-")
        to_r, self.to_w = os.pipe()
        self.from_r, from_w = os.pipe()

        # bash puts the pipes on fds 3 and 4, where Chromium expects them
        self.proc = subprocess.Popen(
            ["bash", "-c", 'exec "$0" "$@" 3<&%d 4>&%d' % (to_r, from_w), exe,
             "--headless", "--no-sandbox", "--disable-gpu",
             "--user-data-dir=" + self.profile, "--remote-debugging-pipe",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--disable-background-networking", "--disable-sync",
             "--disable-component-update", "--mute-audio", "about:blank"],
            pass_fds=(to_r, from_w),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.deadline = time.monotonic() + timeout

    def close(self):
        try:
            self.send("Browser.close", wait=False)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_w)
        os.close(self.from_r)
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read(self):
        while b"\0" not in self.buf:
            if time.monotonic() > self.deadline:
                raise TimeoutError("page_check: the browser did not answer in time")
            chunk = os.read(self.from_r, 1 << 20)
            if not chunk:
                raise EOFError("page_check: the browser closed its pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method, params=None, session=None, wait=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_w, json.dumps(msg).encode() + b"\0")
        if not wait:
            return None
        while True:
            m = self._read()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, name):
        for i, m in enumerate(self.events):
            if m.get("method") == name:
                return self.events.pop(i)
        while True:
            m = self._read()
            if m.get("method") == name:
                return m
            self.events.append(m)


PROBE = """(() => {
  const charts = [...document.querySelectorAll('svg.chart')].map(s => {
    const r = s.getBoundingClientRect();
    return {title: (s.querySelector('title') || {}).textContent || '',
            marks: s.querySelectorAll('.d').length, width: r.width, height: r.height};
  });
  const images = [...document.images].map(i => ({
    complete: i.complete, natural_width: i.naturalWidth, natural_height: i.naturalHeight,
    width: i.getBoundingClientRect().width, height: i.getBoundingClientRect().height}));
  const nav = performance.getEntriesByType('navigation')[0];
  return JSON.stringify({charts, images, load_ms: nav ? nav.loadEventEnd : null,
                         height: document.documentElement.scrollHeight,
                         text: document.body ? document.body.innerText.length : 0});
})()"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("page")
    ap.add_argument("--screenshot", help="write a PNG of the whole page here")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--min-charts", type=int, default=0)
    ap.add_argument("--min-images", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    url = "file://" + os.path.abspath(a.page)
    b = Browser(a.timeout)
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for dom in ("Page", "Runtime", "Log", "Network"):
            b.send(dom + ".enable", session=s)
        b.send("Emulation.setDeviceMetricsOverride",
               {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
               session=s)
        b.send("Page.navigate", {"url": url}, session=s)
        b.wait_event("Page.loadEventFired")
        opened = b.send("Runtime.evaluate", {
            "expression": "new Promise(r => requestAnimationFrame(() => "
                          "requestAnimationFrame(() => r(performance.now()))))",
            "awaitPromise": True, "returnByValue": True}, session=s)
        seen = json.loads(b.send("Runtime.evaluate", {"expression": PROBE, "returnByValue": True},
                                 session=s)["result"]["value"])
        if a.screenshot:
            # sections laid out only once in view (content-visibility: auto)
            # are all laid out for the picture of the whole page
            h = int(b.send("Runtime.evaluate", {
                "expression": "document.querySelectorAll('section').forEach("
                              "x => x.style.contentVisibility = 'visible'); "
                              "new Promise(r => requestAnimationFrame(() => "
                              "r(document.documentElement.scrollHeight)))",
                "awaitPromise": True, "returnByValue": True}, session=s)["result"]["value"])
            b.send("Emulation.setDeviceMetricsOverride",
                   {"width": 1400, "height": max(1000, min(h, 16000)), "deviceScaleFactor": 1,
                    "mobile": False}, session=s)
            shot = b.send("Page.captureScreenshot", {"format": "png"}, session=s)
            with open(a.screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
        # events that arrived meanwhile
        b.send("Runtime.evaluate", {"expression": "1"}, session=s)
    finally:
        b.close()

    errors, network = [], []
    for m in b.events:
        meth, p = m.get("method"), m.get("params", {})
        if meth == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(" ".join(str(x.get("value", x.get("description", "")))
                                   for x in p.get("args", [])))
        elif meth == "Runtime.exceptionThrown":
            errors.append(p.get("exceptionDetails", {}).get("text", "exception"))
        elif meth == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            errors.append(p["entry"].get("text", ""))
        elif meth == "Network.requestWillBeSent":
            u = p.get("request", {}).get("url", "")
            if not u.startswith(("data:", "file:", "about:")):
                network.append(u)
    out = {
        "page": a.page, "bytes": os.path.getsize(a.page),
        "load_ms": seen["load_ms"], "opened_ms": opened["result"]["value"],
        "console_errors": errors, "network": network,
        "charts": seen["charts"], "images": seen["images"], "text_chars": seen["text"],
    }
    bad = []
    if errors:
        bad.append("%d console errors" % len(errors))
    if network:
        bad.append("%d network requests" % len(network))
    empty = [c["title"] for c in seen["charts"] if c["marks"] < 1 or c["width"] < 10 or c["height"] < 10]
    if empty:
        bad.append("empty charts: %s" % empty)
    broken = [i for i, x in enumerate(seen["images"])
              if not x["complete"] or x["natural_width"] < 1 or x["width"] < 1]
    if broken:
        bad.append("images that did not decode or show: %s" % broken)
    if len(seen["charts"]) < a.min_charts:
        bad.append("%d charts, fewer than %d" % (len(seen["charts"]), a.min_charts))
    if len(seen["images"]) < a.min_images:
        bad.append("%d images, fewer than %d" % (len(seen["images"]), a.min_images))
    out["problems"] = bad
    summary = dict(out)
    summary["charts"] = len(seen["charts"])
    summary["chart_marks"] = sum(c["marks"] for c in seen["charts"])
    summary["images"] = len(seen["images"])
    print(json.dumps(summary))
    if a.check and bad:
        sys.exit(1)


if __name__ == "__main__":
    main()

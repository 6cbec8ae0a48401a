"""Headless Chromium driven over the DevTools protocol (a WebSocket, spoken with the
`websockets` package): names mapped with --host-resolver-rules, the test certificate
accepted by its SPKI hash, pages opened and JavaScript evaluated (promises awaited)."""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import time

import websockets
from websockets.asyncio.client import connect as ws_connect

from clusterlab import DOMAIN, LOOPBACK, CaseError


def chromium_binary() -> str | None:
    for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if p and os.access(p, os.X_OK):
            return p
    return None


class Chromium:
    def __init__(self, ctx, spki: str):
        self.ctx = ctx
        self.spki = spki
        self.proc = None
        self.profile = ctx.workdir / "chromium-profile"
        self.ws = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._events: list[dict] = []
        self._event = asyncio.Event()
        self._reader = None

    async def start(self):
        exe = chromium_binary()
        if exe is None:
            raise CaseError("chromium is not installed")
        self.profile.mkdir(parents=True, exist_ok=True)
        argv = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--no-proxy-server",
                "--password-store=basic", "--use-mock-keychain", "--mute-audio",
                f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
                f"--remote-debugging-address={LOOPBACK}",
                f"--host-resolver-rules=MAP {DOMAIN} {LOOPBACK}, MAP *.{DOMAIN} {LOOPBACK}",
                f"--ignore-certificate-errors-spki-list={self.spki}", "about:blank"]
        self.proc = await self.ctx.procs.start("chromium", argv)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self.proc.alive:
                raise CaseError(f"chromium exited (rc={self.proc.p.returncode}): {self.proc.tail(4)}")
            try:
                lines = port_file.read_text().split("\n")
                if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].strip():
                    break
            except OSError:
                pass
            await asyncio.sleep(0.1)
        else:
            raise CaseError("chromium wrote no DevToolsActivePort within 30s")
        url = f"ws://{LOOPBACK}:{lines[0].strip()}{lines[1].strip()}"
        self.ws = await ws_connect(url, max_size=None, ping_interval=None, open_timeout=10)
        self._reader = asyncio.create_task(self._read())

    async def _read(self):
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if "id" in msg and msg["id"] in self._pending:
                    fut = self._pending.pop(msg["id"])
                    if not fut.done():
                        fut.set_result(msg)
                else:
                    self._events.append(msg)
                    self._event.set()
                    self._event = asyncio.Event()
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(CaseError("DevTools connection closed"))

    async def send(self, method: str, params: dict | None = None, session: str | None = None,
                   timeout: float = 30) -> dict:
        mid = next(self._ids)
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self._pending[mid] = fut
        await self.ws.send(json.dumps(msg))
        try:
            res = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise CaseError(f"DevTools {method}: no answer within {timeout}s") from None
        if "error" in res:
            raise CaseError(f"DevTools {method}: {res['error']}")
        return res.get("result", {})

    async def wait_event(self, method: str, session: str | None, start: int, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        i = start
        while True:
            while i < len(self._events):
                e = self._events[i]
                i += 1
                if e.get("method") == method and (session is None or e.get("sessionId") == session):
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ev = self._event
            try:
                await asyncio.wait_for(ev.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def open_page(self, url: str, timeout: float = 20) -> "Page":
        t = await self.send("Target.createTarget", {"url": "about:blank"})
        s = await self.send("Target.attachToTarget", {"targetId": t["targetId"], "flatten": True})
        page = Page(self, t["targetId"], s["sessionId"])
        await self.send("Page.enable", session=page.session)
        await self.send("Runtime.enable", session=page.session)
        await page.navigate(url, timeout)
        return page

    async def stop(self):
        try:
            if self.ws is not None:
                await asyncio.wait_for(self.ws.close(), 3)
        except Exception:
            pass
        if self._reader:
            self._reader.cancel()
        if self.proc is not None and self.proc.alive:
            # the browser's helper processes are in its process group (its own session)
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
            if await self.proc.wait_exit(5) is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        if self.proc is not None:
            await self.proc.stop(signal.SIGKILL, 3)


class Page:
    def __init__(self, browser: Chromium, target: str, session: str):
        self.b = browser
        self.target = target
        self.session = session
        self.console: list = []

    async def navigate(self, url: str, timeout: float = 20):
        start = len(self.b._events)
        res = await self.b.send("Page.navigate", {"url": url}, session=self.session)
        if res.get("errorText"):
            raise CaseError(f"chromium could not open {url}: {res['errorText']}")
        ev = await self.b.wait_event("Page.loadEventFired", self.session, start, timeout)
        if ev is None:
            raise CaseError(f"chromium: {url} did not load within {timeout}s")

    async def evaluate(self, expression: str, timeout: float = 30):
        """Value of the expression (a promise is awaited); a thrown error fails the case."""
        res = await self.b.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                    "returnByValue": True, "timeout": int(timeout * 1000)},
                                session=self.session, timeout=timeout + 5)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            text = (d.get("exception") or {}).get("description") or d.get("text")
            raise CaseError(f"JavaScript threw: {str(text)[:400]}")
        return res.get("result", {}).get("value")

    async def close(self):
        try:
            await self.b.send("Target.closeTarget", {"targetId": self.target}, timeout=5)
        except Exception:
            pass

"""Headless Chromium (Debian's `chromium` package) driven over the DevTools protocol, for page tests.

`open_page(url, expression)` loads `url` in a fresh profile, waits for the load event, evaluates the
JavaScript `expression` (its JSON-able value is returned) and collects every console error, uncaught
exception and failed resource load. Chromium listens on 127.0.0.1 only and is stopped by its pid.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [  # no sandbox as root, and no background connections: this machine's network is closed
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
]  # fmt: skip


def open_page(url: str, expression: str, timeout: float = 60) -> tuple[object, list[str]]:
    """(value of `expression` after the page loaded, [error messages from the page])."""
    profile = Path(tempfile.mkdtemp(prefix="faice-chromium-"))
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit code {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        return asyncio.run(asyncio.wait_for(_drive(port, url, expression), timeout))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def _drive(port: int, url: str, expression: str) -> tuple[object, list[str]]:
    import aiohttp

    errors: list[str] = []
    ids = itertools.count(1)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t["type"] == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            events: list[dict] = []

            async def call(method: str, **params) -> dict:
                call_id = next(ids)
                await ws.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
                async for message in ws:
                    data = json.loads(message.data)
                    if data.get("id") == call_id:
                        if "error" in data:
                            raise RuntimeError(f"{method}: {data['error']}")
                        return data.get("result", {})
                    events.append(data)
                raise RuntimeError("chromium closed the DevTools connection")

            for domain in ("Runtime", "Log", "Page"):
                await call(f"{domain}.enable")
            await call("Page.navigate", url=url)
            while not any(e.get("method") == "Page.loadEventFired" for e in events):
                message = await ws.receive()
                events.append(json.loads(message.data))
            result = await call(
                "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
            )
            if "exceptionDetails" in result:
                raise RuntimeError(f"expression failed: {result['exceptionDetails']}")
            await call("Runtime.evaluate", expression="0")  # flush events raised by the expression
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            errors.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
    return result["result"].get("value"), errors

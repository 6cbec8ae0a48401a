"""The configuration file's `settings`: any serve flag by its name, beaten by the flag itself; a typo
refuses to start, naming it."""
from __future__ import annotations

import asyncio
import json

from harness import CaseError, Ctx


async def case_config_settings(ctx: Ctx):
    """A node started with `--config` holding namespaces and settings (max-message-bytes 64,
    max-subscriptions 1, ping-interval 30) and the flag `--max-subscriptions 2`: a 100-byte publish
    answers too_large, a third subscribe limit_exceeded (the flag beat the file); a file with an unknown
    setting makes serve exit non-zero naming it."""
    path = ctx.workdir / "settings.json"
    path.write_text(json.dumps({"namespaces": {"": {"topic": ctx.topic}},
                                "settings": {"max-message-bytes": 64, "max-subscriptions": 1, "ping-interval": 30}}))
    srv = await ctx.start_serve("settings", ctx.bootstrap, "e2e-settings",
                                ["--config", str(path), "--max-subscriptions", "2"])
    c = await ctx.connect(srv, name="settings")
    big = await c.request({"type": "publish", "channel": "e2e.settings", "data": "x" * 100}, timeout=10)
    if big.get("code") != "too_large":
        raise CaseError(f"a 100-byte publish under max-message-bytes 64 (file) answered {big}")
    answers = [await c.request({"type": "subscribe", "channel": f"e2e.settings.{i}"}, timeout=10) for i in range(3)]
    kinds = [a.get("type") if a.get("type") != "error" else a.get("code") for a in answers]
    if kinds != ["subscribed", "subscribed", "limit_exceeded"]:
        raise CaseError(f"max-subscriptions 2 (flag over file's 1): subscribes answered {kinds}")
    bad = ctx.workdir / "settings-typo.json"
    bad.write_text(json.dumps({"settings": {"max-conections": 5}}))
    proc = await asyncio.create_subprocess_exec(ctx.binary, "serve", "--brokers", ctx.bootstrap, "--port", "0",
                                                "--config", str(bad), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    except asyncio.TimeoutError:
        proc.kill()
        raise CaseError("serve with an unknown setting did not exit")
    if proc.returncode == 0 or b"max-conections" not in err:
        raise CaseError(f"serve with an unknown setting: rc {proc.returncode}, stderr {err[-300:]!r}")

"""The dev run (`python -m devkit dev`): its banner's curl lines work, passwords shown once."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

from devkit.embedded import free_port
from tests.support.processes import stop

# The dev kit runs from the checkout, as scripts/run.sh runs it.
DEVKIT = [sys.executable, "-m", "devkit"]
ROOT = Path(__file__).resolve().parents[2]


async def test_the_dev_run_prints_curl_lines_that_work():
    data_dir = Path(tempfile.mkdtemp(prefix="tollgate-dev-test-", dir="/tmp"))
    data_dir.chmod(0o755)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env.update({"TOLLGATE_DATA_DIR": str(data_dir), "TOLLGATE_PORT": str(port)})
    log_path = data_dir / "dev-run.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(*DEVKIT, "dev", env=env, cwd=ROOT,
                                                       stdout=subprocess.PIPE, stderr=log_file)
    try:
        banner = ""
        while "Press Ctrl-C" not in banner:
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line, f"dev run ended early:\n{banner}"
            banner += line.decode()
        # A password is printed once, when it is generated (decision 0014).
        admin_password = (data_dir / "admin_password").read_text().strip()
        assert f"admin@tollgate.local / {admin_password}   (generated now" in banner
        curl_lines = [line.strip().split("   #")[0] for line in banner.splitlines()
                      if line.strip().startswith("curl ")]
        assert len(curl_lines) >= 18
        outputs = []
        for line in curl_lines:
            done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, line
            outputs.append(done.stdout)
        joined = "\n".join(outputs)
        assert '"status":"ok"' in outputs[0]
        assert '"valid":true' in outputs[1]
        assert "HTTP/1.1 200" in outputs[2] and f"127.0.0.1:{port}/api/v1/proxy/page2" in outputs[2]
        assert json.loads(outputs[3])["path"] == "/echo/hello"
        assert "device_conflict" in outputs[4]
        assert "access_token" in outputs[5]
        assert len(json.loads(outputs[6])["items"]) == 4
        assert json.loads(outputs[7])["price"] == "1", outputs[7]
        assert [t["type"] for t in json.loads(outputs[8])["items"]][:2] == ["purchase", "adjustment"]
        assert json.loads(outputs[9])["usage"]["completion_tokens"] == 10
        assert "event: message_stop" in outputs[10]
        assert json.loads(outputs[11])["usageMetadata"]["candidatesTokenCount"] > 0
        # The CRM's tokens are micro-credits (issue 11): the demo's 100 credits less what the calls cost.
        assert json.loads(outputs[12])["balance"]["tokens_available"] < 99 * 10**6
        assert "tollgate_http_requests_total" in joined
        # Buying credits offline: the purchase, the fake Stripe's signed webhook, the credits arriving.
        assert json.loads(outputs[14])["status"] == "pending" and json.loads(outputs[14])["amount"] == "10.00"
        assert json.loads(outputs[15])["webhooks"][0]["status"] == 200, outputs[15]
        assert json.loads(outputs[16])["items"][0]["amount"] == "10"
        guest = json.loads(outputs[17])
        assert guest["result"]["status"] == 200 and guest["result"]["body"].startswith("OK"), outputs[17]
        # A browser session through a one-time link: the link, the cookie it sets, the page behind it.
        assert json.loads(outputs[18])["url"].startswith(f"http://127.0.0.1:{port}/api/v1/proxy/session/link?code=")
        assert "HTTP/1.1 303" in outputs[19] and "Set-Cookie: tollgate_session=" in outputs[19]
        assert "HttpOnly" in outputs[19] and facts_token(banner) not in outputs[19]
        assert "tollgate browser page" in outputs[20]
        assert f"127.0.0.1:{port}/api/v1/proxy/static/browser.css" in outputs[20]
        # The admin UI's address, as printed, answers with its login form,
        # on a port of its own (decision 0027): the gateway's port, which serves the target's pages, has none of it.
        admin_ui = re.search(r"admin UI +(\S+)", banner).group(1)
        admin_port = json.loads((data_dir / "ports.json").read_text())["admin"]
        assert admin_ui == f"http://127.0.0.1:{admin_port}/admin/" and admin_port != port
        async with aiohttp.ClientSession() as session:
            async with session.get(admin_ui) as response:
                assert response.status == 200 and 'name="password"' in await response.text()
            async with session.get(f"http://127.0.0.1:{port}/admin/") as response:
                assert response.status == 404
        # A magic link goes to this terminal (stdout), never to the log (stderr): M10.
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/api/v1/auth/magic-link",
                                    json={"email": "demo@tollgate.local"}) as response:
                assert response.status == 202
        printed = ""
        while printed.count("magic-link/verify?token=") < 2:  # the guest's payment mail, then this one
            printed += (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        tokens = re.findall(r"token=([A-Za-z0-9_-]{64})", printed)
        logged = log_path.read_text(errors="replace")
        assert len(tokens) == 2 and not [token for token in tokens if token in logged]
    finally:
        await stop(process)
        shutil.rmtree(data_dir, ignore_errors=True)


def facts_token(banner: str) -> str:
    return re.search(r"demo token +(\S+)", banner).group(1)


def test_a_later_dev_start_names_the_password_files_instead_of_printing_them():
    from devkit import dev
    from gateway.core.config import Settings

    facts = {"admin_password": "", "demo_password": "", "admin_password_file": "/data/admin_password",
             "demo_password_file": "/data/demo_password", "demo_token": "t" * 64, "demo_api_key": "tg_key"}
    text = dev.banner(Settings(public_url="http://127.0.0.1:8080"), facts)
    assert "admin@tollgate.local / the password in /data/admin_password" in text
    assert '\\"password\\": \\"$(cat /data/admin_password)\\"' in text
    first = dev.banner(Settings(public_url="http://127.0.0.1:8080"), {**facts, "admin_password": "s3cret-pw"})
    assert "admin@tollgate.local / s3cret-pw   (generated now, shown once; kept in /data/admin_password)" in first

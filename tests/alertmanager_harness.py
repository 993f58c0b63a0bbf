"""The real Prometheus Alertmanager (Debian package) on free ports, routing to a webhook
receiver this test process runs, plus a generic-webhook endpoint for cxpulse itself.

Alertmanager groups by alertname and team, waits 1 s before the first notification of a
group and 2 s between updates, and repeats only after an hour: within a test, every
notification it sends is a real state change (firing, or resolved).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.kafka_harness import free_port_block

BINARY = "/usr/bin/prometheus-alertmanager"


class Inbox:
    """HTTP endpoints: ``/am`` (Alertmanager's webhook) and ``/hook`` (cxpulse's webhook)."""

    def __init__(self) -> None:
        self.am: list[dict[str, Any]] = []
        self.hook: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with inbox.lock:
                    if self.path == "/am":
                        inbox.am.append(body)
                    else:
                        inbox.hook.append((self.headers.get("Idempotency-Key", ""), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def notifications(self, status: str, alertname: str) -> list[dict[str, Any]]:
        """Alertmanager notifications of one status that carry the alert."""
        with self.lock:
            return [
                n
                for n in self.am
                if n["status"] == status
                and any(a["labels"].get("alertname") == alertname for a in n["alerts"])
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Alertmanager:
    def __init__(self, workdir: Path, inbox: Inbox) -> None:
        if not Path(BINARY).exists() and shutil.which("prometheus-alertmanager") is None:
            raise AssertionError(
                "prometheus-alertmanager is missing: run `make tools` (Debian package)"
            )
        self.port = free_port_block(1)
        config = workdir / "alertmanager.yml"
        config.write_text(
            f"""route:
  receiver: hook
  group_by: [alertname, team]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:{inbox.port}/am
        send_resolved: true
"""
        )
        self.log = (workdir / "alertmanager.log").open("wb")
        self.proc = subprocess.Popen(
            [
                shutil.which("prometheus-alertmanager") or BINARY,
                f"--config.file={config}",
                f"--storage.path={workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"alertmanager did not become ready: {self.logs()}")

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as resp:
            return json.loads(resp.read())

    def logs(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

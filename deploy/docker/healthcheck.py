"""Container health check: GET a health path on this worker's Faust web port (loopback).

The image runs one role; the compute (CXPULSE_PORTS__WORKER_WEB, 6066) and sink
(CXPULSE_PORTS__SINK_WEB, 6067) ports are both tried, the closed one refuses at once.
Exit 0 when one answers 2xx, 1 otherwise (Docker's HEALTHCHECK contract).
"""

import os
import sys
import urllib.request

path = sys.argv[1] if len(sys.argv) > 1 else "/health/live"
ports = [
    os.environ.get("CXPULSE_PORTS__WORKER_WEB", "6066"),
    os.environ.get("CXPULSE_PORTS__SINK_WEB", "6067"),
]
for port in ports:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=4) as resp:
            if 200 <= resp.status < 300:
                sys.exit(0)
    except OSError:
        continue
sys.exit(1)

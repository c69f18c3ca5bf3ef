"""A bare Sanic hello-world: the baseline that bench/health_rps.py compares orc against.

One route, ``GET /api/health`` -> ``{"status":"ok"}``, no middleware, access log off, one
process, started the way orc's API starts (``prepare`` + ``serve_single``, backlog 1024), on
the same Sanic that orc uses. Run: ``.venv/bin/python bench/bare_sanic.py --port 8001``.
"""

from __future__ import annotations

import argparse

from sanic import Request, Sanic
from sanic.response import HTTPResponse, json

app = Sanic("bare", configure_logging=False)
app.config.ACCESS_LOG = False
app.config.MOTD = False
app.config.AUTO_EXTEND = False


@app.get("/api/health")
async def health(request: Request) -> HTTPResponse:
    return json({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    app.prepare(
        host=args.host,
        port=args.port,
        single_process=True,
        access_log=False,
        motd=False,
        backlog=1024,
    )
    Sanic.serve_single(primary=app)


if __name__ == "__main__":
    main()

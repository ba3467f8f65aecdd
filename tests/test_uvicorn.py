"""Real uvicorn with ``--log-config <json>``: SIGTERM still delivers every record, and still kills the process.

The test runs ``uvicorn --log-config log.json app:app`` (a tiny ASGI app, no framework) with the CloudWatch
handler (and a console handler, same format) on ``uvicorn.error``, ``uvicorn.access`` and the app's logger,
sends 10 requests, SIGTERMs uvicorn and reads the stream back from the moto server.  flush_interval is long,
so every record is still buffered when SIGTERM arrives.

uvicorn installs its own SIGTERM handler over the one the handler installed at dictConfig time, shuts down
(logging "Shutting down" ... "Finished server process"), then restores the previous handler and re-raises
SIGTERM.  It proves that the 10 access lines, the 10 app records and uvicorn's own start/stop records are
delivered exactly once, in the process's ``{pid}`` stream, and that uvicorn still ends killed by SIGTERM
(returncode -15), promptly, well under the handler's shutdown_timeout.
"""
from __future__ import annotations

import json
import socket
import textwrap
import uuid

from helpers import free_port, program, read_group, running, subprocess_env
from webserver import FORMAT, compare, once, printed, serve, terminate

HOST = socket.gethostname()
REQUESTS = 10
SHUTDOWN_TIMEOUT = 10
PROMPT = 4.0  # SIGTERM -> process gone, well under shutdown_timeout
LOGGERS = ["uvicorn.error", "uvicorn.access", "app"]
APP = textwrap.dedent('''\
    import logging

    log = logging.getLogger("app")
    log.info("app imported")


    async def app(scope, receive, send):
        assert scope["type"] == "http"
        log.info("request %s handled", scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
    ''')


def log_config(endpoint_url: str, group: str) -> dict:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": FORMAT}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
            "cloudwatch": {
                "class": "cwlhandler.CloudWatchLogsHandler",
                "formatter": "plain",
                "log_group": group,
                "log_stream": "{hostname}/{program}/{pid}",
                "endpoint_url": endpoint_url,
                "flush_interval": 60,  # nothing is sent before SIGTERM
                "shutdown_timeout": SHUTDOWN_TIMEOUT,
            },
        },
        "loggers": {name: {"level": "INFO", "handlers": ["console", "cloudwatch"], "propagate": False}
                    for name in LOGGERS},
    }


def test_uvicorn_sigterm_delivers_and_still_kills(tmp_path, moto_url):
    group = f"/tests/uvicorn/{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "log.json").write_text(json.dumps(log_config(moto_url, group)))
    port = free_port()
    args = [program("uvicorn"), "--log-config", str(tmp_path / "log.json"), "--host", "127.0.0.1",
            "--port", str(port), "--lifespan", "off", "--app-dir", str(tmp_path), "app:app"]
    with running(args, cwd=str(tmp_path), env=subprocess_env()) as proc:
        answers = serve(proc, port, [f"/r/{i}" for i in range(REQUESTS)])
        returncode, err, elapsed = terminate(proc)
    tail = err[-6000:]
    assert len(answers) == REQUESTS and set(answers.values()) == {"ok"}, f"uvicorn did not answer\n{tail}"
    assert returncode == -15 and elapsed < PROMPT, f"exit {returncode} after {elapsed:.1f}s\n{tail}"

    lines = printed(err, LOGGERS)
    assert list(lines) == [proc.pid], f"{sorted(lines)}\n{tail}"
    logged = lines[proc.pid]
    others = ["app imported", f"Started server process [{proc.pid}]", "Uvicorn running on", "Shutting down",
              f"Finished server process [{proc.pid}]"]  # the last two logged after SIGTERM
    for text in others:
        assert once(logged, text), f"{text!r}\n{tail}"
    for path in answers:
        assert once(logged, f"request {path} handled") and once(logged, f'"GET {path} HTTP/1.1" 200'), f"{path}\n{tail}"
    assert len(logged) == 2 * REQUESTS + len(others), logged

    differences = compare(read_group(moto_url, group), {f"{HOST}/uvicorn/{proc.pid}": logged})
    assert not differences, f"{differences}\n{tail}"

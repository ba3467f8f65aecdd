"""An embedded CloudWatch Logs emulator (moto's server) for demos and examples.

Needs the ``[local]`` extra: ``pip install 'cwlhandler[local]'``.  It listens on
127.0.0.1 only and holds everything in memory.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Optional


class LocalEmulator:
    """``with LocalEmulator() as emu: ... emu.endpoint_url ...``"""

    def __init__(self, port: int = 0) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            raise RuntimeError(
                "the embedded emulator needs moto's server: pip install 'cwlhandler[local]'"
            ) from None
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.endpoint_url: Optional[str] = None

    def start(self) -> "LocalEmulator":
        # The emulator accepts any credentials; dummy ones keep botocore from looking further.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        # The server logs each request on the "werkzeug" logger; with a handler on the root
        # logger in the same process every upload would log a record to upload.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> "LocalEmulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

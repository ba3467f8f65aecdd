"""State of the shipping threads (the flusher and the scheduler's workers), one per thread."""
from __future__ import annotations

import threading
from typing import Any, Optional, Tuple


class _ThreadState(threading.local):
    """Per-thread state of the shipping threads.

    ``shipping`` marks them: records logged on them (botocore, urllib3) are
    never fed back into any cwlhandler handler.  Thread-local, so the mark dies
    with the thread (thread ids are reused).  Class-level defaults: a missing
    thread-local attribute would cost an exception per lookup.
    """

    shipping = False
    body: Optional[bytes] = None  # a PutLogEvents body encoded by this worker, for the hook
    # The request this worker is about to send, until its bytes go out: (scheduler, batch, events in it).
    sending: Optional[Tuple[Any, Any, int]] = None
    log_format: Optional[str] = None  # the x-amzn-logs-format of the batch this worker sends, for the hook


thread_state = _ThreadState()

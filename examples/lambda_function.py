"""AWS Lambda: ship a function's records to a log group of your choice.

Two rules:

1. Create the handler at module level.  That code runs once per cold start;
   warm invocations reuse the handler, its boto3 client and its connections.
2. Flush before returning: decorate the function with ``@flush_on_return``.
   Lambda freezes the execution environment as soon as the function returns:
   the handler's background threads stop wherever they are, and records still
   buffered would wait for the next invocation, or be lost if the environment
   is never thawed again.  The decorator waits, on return and on raise, until
   every record logged so far is acknowledged: at most ``timeout`` seconds, and
   never past the invocation's remaining time less half a second.

``JsonFormatter`` makes each record one JSON object carrying the invocation's
``requestId`` (while ``@flush_on_return`` runs the function) and, in Lambda,
the ``traceId`` and ``spanId`` of its X-Ray trace (or of the active
OpenTelemetry span), so a Logs Insights query finds one request's records:
``filter requestId = "…"`` or ``filterIndex traceId = "…"``.

The role needs ``logs:PutLogEvents`` and ``logs:CreateLogStream`` on the group,
and ``logs:CreateLogGroup`` only if the group may not exist yet (or create it
beforehand and pass ``create_log_group=False``).  Lambda's runtime also keeps a handler on the root
logger that writes to the function's own log group; records of ``log`` below
propagate there too.

Run it locally: ``python examples/lambda_function.py`` (two simulated invocations).
"""
import logging
import os

from cwlhandler import CloudWatchLogsHandler, JsonFormatter, flush_on_return

if __name__ == "__main__":
    # Local run only (see the end of the file).  Like the Lambda runtime, provide
    # the environment (endpoint, region) before the module-level code below runs.
    from _demo import ensure_endpoint

    ensure_endpoint()

# --- cold start ------------------------------------------------------------------------
cloudwatch = CloudWatchLogsHandler(
    log_group="/examples/lambda",
    # {uuid} is unique per handler, hence per execution environment.
    log_stream="{date}/{uuid}",
    # Unset in AWS (the region's endpoint); set it to use a local emulator.
    endpoint_url=os.environ.get("CWL_ENDPOINT_URL"),
)
cloudwatch.setFormatter(JsonFormatter(fields=["level", "message", "exception"]))

log = logging.getLogger("orders")
log.setLevel(logging.INFO)
log.addHandler(cloudwatch)

# The flush usually waits one PutLogEvents round trip (at a cold start, also the
# stream's creation); this bounds what a slow or unreachable endpoint can add to
# an invocation's duration, and to its bill.  What is not delivered by then stays
# buffered and goes out during a later invocation.
FLUSH_TIMEOUT = 10.0  # seconds


# --- per invocation --------------------------------------------------------------------
@flush_on_return(timeout=FLUSH_TIMEOUT)
def handler(event, context):
    try:
        log.info("%d items", len(event["items"]))
        total = sum(item["price"] for item in event["items"])
        log.info("total %.2f", total)
        return {"statusCode": 200, "total": total}
    except Exception:
        log.exception("order failed")
        raise


if __name__ == "__main__":
    import json
    import uuid

    from _demo import print_events

    class FakeContext:
        """The part of Lambda's context object the function uses."""

        def __init__(self) -> None:
            self.aws_request_id = str(uuid.uuid4())[:8]

        def get_remaining_time_in_millis(self) -> int:
            return 30_000

    # Two warm invocations of the same environment.
    print(handler({"items": [{"price": 3.5}, {"price": 1.25}]}, FakeContext()))
    try:
        handler({"items": [{"price": "free"}]}, FakeContext())
    except TypeError as exc:
        print("invocation failed:", exc)
    # Each invocation flushed before returning: everything is already there,
    # even though the handler was never closed.
    print("stats:", json.dumps(cloudwatch.stats(), sort_keys=True))
    print_events("/examples/lambda")

"""Flask: configure logging before creating the app, as Flask's docs advise.

``app.logger`` (and every other logger) propagates to the root logger, where
the CloudWatch handler sits; Flask then adds no handler of its own.  Unhandled
exceptions in views are logged by Flask on ``app.logger`` with the traceback.
A small filter adds the request's method and path to each record.

Run it: ``pip install flask`` then ``python examples/flask_app.py`` (makes a few
requests with the test client).  Served by gunicorn, see gunicorn_conf.py.
"""
import logging
import logging.config
import os

from flask import Flask, has_request_context, request


class RequestInfo(logging.Filter):
    """Adds ``method`` and ``path`` (``-`` outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        in_request = has_request_context()
        record.method = request.method if in_request else "-"
        record.path = request.path if in_request else "-"
        return True


def configure_logging() -> None:
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_info": {"()": RequestInfo}},
        "formatters": {
            "web": {"format": "%(levelname)s %(method)s %(path)s: %(message)s"},
        },
        "handlers": {
            "cloudwatch": {
                "class": "cwlhandler.CloudWatchLogsHandler",
                "filters": ["request_info"],
                "formatter": "web",
                "log_group": "/examples/flask",
                "log_stream": "{hostname}/{program}/{pid}",
                # Unset in AWS (the region's endpoint); set it to use a local emulator.
                "endpoint_url": os.environ.get("CWL_ENDPOINT_URL"),
            },
        },
        "root": {"level": "INFO", "handlers": ["cloudwatch"]},
    })


def create_app() -> Flask:
    configure_logging()
    app = Flask(__name__)

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int):
        app.logger.info("order %d looked up", order_id)
        return {"id": order_id, "status": "shipped"}

    @app.post("/orders")
    def create_order():
        order = request.get_json()
        app.logger.info("order created with %d items", len(order["items"]))
        return {"id": 43}, 201

    @app.get("/pay")
    def pay():
        raise RuntimeError("payment service unreachable")  # Flask logs it, answers 500

    return app


if __name__ == "__main__":
    from _demo import ensure_endpoint, print_events

    ensure_endpoint()
    app = create_app()
    with app.test_client() as client:
        print("GET /orders/42 ->", client.get("/orders/42").status_code)
        print("POST /orders ->", client.post("/orders", json={"items": ["tea", "cup"]}).status_code)
        print("GET /pay ->", client.get("/pay").status_code)
    logging.shutdown()  # what interpreter exit does: flush and close every handler
    print_events("/examples/flask")

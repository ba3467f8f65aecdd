"""Django: a ``LOGGING`` setting for ``settings.py``.

Django applies ``LOGGING`` with ``logging.config.dictConfig`` on startup, on
top of its defaults (``django`` logs to the console in DEBUG and mails
admins on errors).  The ``django`` logger propagates to the root, so the root's
``cloudwatch`` handler receives Django's records too: ``django.request`` logs
every 5xx with its traceback.

Each process (``runserver`` and its autoreloader, every gunicorn or uWSGI
worker) gets its own stream through ``{pid}``.

Run it (Django not needed: it applies ``LOGGING`` the way Django would):
``python examples/django_settings.py``
"""
import os

# --- settings.py -----------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "verbose": {"format": "{levelname} {name} {module}: {message}", "style": "{"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "verbose"},
        "cloudwatch": {
            "class": "cwlhandler.CloudWatchLogsHandler",
            "level": "INFO",
            "formatter": "verbose",
            "log_group": "/examples/django",
            "log_stream": "{hostname}/{program}/{pid}",
            "retention_days": 30,
            # Unset in AWS (the region's endpoint); set it to use a local emulator.
            "endpoint_url": os.environ.get("CWL_ENDPOINT_URL"),
        },
    },
    "root": {"handlers": ["console", "cloudwatch"], "level": "INFO"},
    "loggers": {
        # Django's SQL log is DEBUG-level and very chatty.
        "django.db.backends": {"level": "WARNING"},
    },
}
# ---------------------------------------------------------------------------


if __name__ == "__main__":
    import logging
    import logging.config

    from _demo import ensure_endpoint, print_events

    ensure_endpoint()
    logging.config.dictConfig(LOGGING)  # what django.setup() does with the setting

    logging.getLogger("shop.views").info("checkout started for cart %s", "c-42")
    logging.getLogger("django.db.backends").debug("(0.001) SELECT 1; args=()")  # filtered out
    try:
        {}["cart"]
    except KeyError:
        # How django.request reports an unhandled exception in a view.
        logging.getLogger("django.request").error(
            "Internal Server Error: %s", "/checkout/", exc_info=True,
            extra={"status_code": 500},
        )

    logging.shutdown()  # what interpreter exit does: flush and close every handler
    print_events("/examples/django")

"""gunicorn: a config file whose ``logconfig_dict`` ships every process's logs.

    gunicorn -c examples/gunicorn_conf.py myapp:app
    gunicorn -c examples/gunicorn_conf.py -w 4 -k gevent myapp:app

``myapp:app`` is your WSGI application (``'examples.flask_app:create_app()'``
is not a good fit: it applies a logging configuration of its own).  Workers
and worker class come from ``-w``/``-k`` (which win), else from
``WEB_CONCURRENCY`` / ``GUNICORN_WORKER_CLASS``, else 2 sync workers.  Set
``CWL_ENDPOINT_URL`` to use a local emulator (LocalStack, a moto server);
``CWL_LOG_GROUP``, ``CWL_FLUSH_INTERVAL`` and ``CWL_SHUTDOWN_TIMEOUT``
override the handler's settings below.

The master applies ``logconfig_dict`` and logs ("Starting gunicorn ...",
"Using worker: ...") right before it forks the workers, so its handler may
be busy sending when a worker is forked.  No ``post_fork`` hook is needed: in
each worker the handler forgets the master's threads, buffered records and
connections and starts its own on the worker's first record; ``{pid}`` in the
stream name is re-evaluated, giving the master and each worker their own
stream.  This holds with ``preload_app = True`` and with gevent workers too.

Workers that exit normally (restart, ``max_requests``, SIGTERM to the master)
flush at exit; keep ``graceful_timeout`` above ``shutdown_timeout`` so the
master does not kill a worker that is still delivering.  A worker killed by
SIGKILL (``timeout`` exceeded) loses what it had not sent yet, at most about
``flush_interval`` seconds of records.
"""
import os

bind = "127.0.0.1:8000"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")

# gunicorn merges this over its own defaults key by key ("loggers", "handlers"
# ... are replaced whole), so it names its loggers and every handler they use.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(levelname)s %(name)s [%(process)d]: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
        "cloudwatch": {
            "class": "cwlhandler.CloudWatchLogsHandler",
            "formatter": "plain",
            "log_group": os.environ.get("CWL_LOG_GROUP", "/examples/gunicorn"),
            "log_stream": "{hostname}/{program}/{pid}",  # one stream per process
            "flush_interval": float(os.environ.get("CWL_FLUSH_INTERVAL", "2")),
            "shutdown_timeout": float(os.environ.get("CWL_SHUTDOWN_TIMEOUT", "10")),
            # Unset in AWS (the region's endpoint); set it to use a local emulator.
            "endpoint_url": os.environ.get("CWL_ENDPOINT_URL"),
        },
    },
    "root": {"level": "INFO", "handlers": ["console", "cloudwatch"]},
    "loggers": {
        # Propagate to the root's handlers; gunicorn.access logs one line per request.
        "gunicorn.error": {"level": "INFO", "propagate": True},
        "gunicorn.access": {"level": "INFO", "propagate": True},
    },
}

# No post_fork hook: nothing to re-create after fork (see above).

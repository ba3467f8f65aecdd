"""gunicorn: a config file whose ``logconfig_dict`` ships every process's logs.

    gunicorn -c examples/gunicorn_conf.py 'examples.flask_app:create_app()'

The master applies ``logconfig_dict`` and logs ("Booting worker ...") before
and while it forks the workers, so its handler may already have threads, a
buffer and open connections when a worker is forked.  No ``post_fork`` hook is
needed: cwlhandler registers ``os.register_at_fork``, so in each worker the
handler forgets the master's threads, buffered records and sockets, and starts
its own on the worker's first record; ``{pid}`` in the stream name is
re-evaluated, giving the master and each worker their own stream.  This holds
with ``preload_app = True`` too.

Workers that exit normally (restart, ``max_requests``, SIGTERM) flush at
exit.  A worker killed by SIGKILL (``timeout`` exceeded) loses what it had
not sent yet, at most about ``flush_interval`` seconds of records.

Run it (gunicorn not needed: it forks two "workers" the way gunicorn does):
``python examples/gunicorn_conf.py``
"""
import os

bind = "127.0.0.1:8000"
workers = 2

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
            "log_group": "/examples/gunicorn",
            "log_stream": "{hostname}/{program}/{pid}",  # one stream per process
            "flush_interval": 2,
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


if __name__ == "__main__":
    import logging
    import logging.config
    import sys

    from _demo import ensure_endpoint, print_events

    ensure_endpoint()
    logging.config.dictConfig(logconfig_dict)  # what gunicorn's master does at startup
    master = logging.getLogger("gunicorn.error")
    master.info("Starting gunicorn (master)")

    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker
            try:
                logging.getLogger("gunicorn.error").info("Booting worker with pid: %d", os.getpid())
                logging.getLogger("shop.views").info("worker %d handled a request", os.getpid())
                logging.getLogger("gunicorn.access").info('"GET /orders/42 HTTP/1.1" 200')
            finally:
                logging.shutdown()  # a gunicorn worker exits through sys.exit, which does this
                os._exit(0)
        children.append(pid)
        master.info("Booted worker %d", pid)
    statuses = [os.waitpid(pid, 0)[1] for pid in children]
    master.info("Shutting down: Master")
    logging.shutdown()
    print("master:", os.getpid(), "workers:", " ".join(map(str, children)))
    print_events("/examples/gunicorn")
    sys.exit(1 if any(statuses) else 0)

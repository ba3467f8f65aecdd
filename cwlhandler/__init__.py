"""cwlhandler: a logging handler that ships records to AWS CloudWatch Logs."""
from .handler import CloudWatchLogsHandler
from .jsonformat import JsonFormatter
from .lifecycle import flush_all, flush_on_return
from .metrics import Metrics

__version__ = "0.1.0"
__all__ = ["CloudWatchLogsHandler", "JsonFormatter", "Metrics", "flush_all", "flush_on_return", "__version__"]

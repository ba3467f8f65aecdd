"""cwlhandler: a logging handler that ships records to AWS CloudWatch Logs."""
from .handler import CloudWatchLogsHandler
from .jsonformat import JsonFormatter

__version__ = "0.1.0"
__all__ = ["CloudWatchLogsHandler", "JsonFormatter", "__version__"]

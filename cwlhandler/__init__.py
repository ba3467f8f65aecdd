"""cwlhandler: a logging handler that ships records to AWS CloudWatch Logs."""
from .handler import CloudWatchLogsHandler

__version__ = "0.1.0"
__all__ = ["CloudWatchLogsHandler", "__version__"]

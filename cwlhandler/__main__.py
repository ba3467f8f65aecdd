"""``python -m cwlhandler``: the command line (see ``cwlhandler.cli``)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

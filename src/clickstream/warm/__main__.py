"""`python -m clickstream.warm [--serve] SOCKET`: the supervisor, or one server."""

import sys

from clickstream.warm.server import main

sys.exit(main(sys.argv[1:]))

"""``python -m trio_ws``: an interactive WebSocket client, and ``serve``, an echo
server. ``python -m trio_ws --help`` explains both."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())

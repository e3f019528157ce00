"""`uvicorn app.main:app`: the gateway built from the environment.

If the environment does not describe a gateway that may start (above all: no API keys and no
explicit GATEWAY_AUTH_DISABLED=true), this prints one line on stderr and exits non-zero before
uvicorn serves anything. Tests build apps with app.factory.create_app instead of importing this.
"""

from __future__ import annotations

import sys

from app.factory import ConfigurationError, create_app

try:
    app = create_app()
except ConfigurationError as exc:
    sys.stderr.write(f"gateway: refusing to start: {exc}\n")
    sys.stderr.flush()
    raise SystemExit(2) from None

"""`uvicorn app.main:app`: the gateway built from the environment.

If the environment does not describe a gateway that may start (above all: no API keys and no
explicit GATEWAY_AUTH_DISABLED=true), this prints one line on stderr and exits non-zero before
uvicorn serves anything. Tests build apps with app.factory.create_app instead of importing this.

The process's garbage collector is tuned here, for a long-running server (and only here, so
tests that build many apps are left alone). Measured under the benchmark (bench/, 64 streams,
about 90k objects in the process): with the defaults, collections cost ~70 us per request and
paused the event loop up to ~50 ms (a full collection walks every object); after this, ~6 us
and ~20 ms:
- gc.freeze(): what exists once the app is built (modules, routes, pydantic schemas: ~65k
  objects) lives as long as the process, so collections stop walking it again and again;
- the young-generation threshold 700 -> 7000: a young collection after 7000 more container
  objects than were freed (a few hundred kB), not 700, i.e. ten times fewer collections;
  most objects of a request are freed by reference counting long before.
"""

from __future__ import annotations

import gc
import sys

from app.factory import ConfigurationError, create_app

GC_THRESHOLDS = (7000, 10, 10)

try:
    app = create_app()
except ConfigurationError as exc:
    sys.stderr.write(f"gateway: refusing to start: {exc}\n")
    sys.stderr.flush()
    raise SystemExit(2) from None

gc.collect()
gc.freeze()
gc.set_threshold(*GC_THRESHOLDS)

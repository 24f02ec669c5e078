"""Media types the servers and the client both name.

It imports nothing, so `lakehouse.client` takes it without loading a server
module (or numpy, pyarrow, FastAPI), and the routers without loading the client.
"""

from __future__ import annotations

# An uncompressed Arrow IPC stream: SQL answers, vector adds and search answers.
ARROW_STREAM = "application/vnd.apache.arrow.stream"

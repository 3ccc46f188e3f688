"""The guardrail service. Importing it sets gRPC core's log level before grpc loads (see README, Logs)."""

import os

# gRPC core writes its own plain-text lines to stderr (e.g. an INFO "Got goaway" when a peer shuts down mid-call),
# which would break the one-JSON-object-per-line log contract. The variable is read once when grpc loads, so it must
# be set before any `import grpc`; an operator's own GRPC_VERBOSITY wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

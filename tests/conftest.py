"""Suite-wide settings. Each area (model, dataplane, operator, deploy) has its own conftest with the real
servers it needs; those fixtures start them through the project's scripts on free loopback ports."""

import os

# Nothing in the suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

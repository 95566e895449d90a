"""Version 1 of the agent protocol: generated stubs (``make proto``) and ``names.py``, the value lists derived
from its enums."""

"""The torture tier shares the system tier's daemon helpers (tests/system/aiosd_helpers.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "system"))

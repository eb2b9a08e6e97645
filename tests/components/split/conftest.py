"""The split tests share the sidecars' tiny HTTP app and client (tests/components/sidecars)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sidecars"))

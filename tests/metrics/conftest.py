from __future__ import annotations

from tests.metrics.queries import secrets_dir

__all__ = ["secrets_dir"]

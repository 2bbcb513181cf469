"""The `secrets` fixture of the metrics_extra tests; the canary/template/query builders are tests.metrics.queries."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.metrics.queries import NAMESPACE

__all__ = ["SecretStore", "secrets"]


class SecretStore:
    """Writes secrets where `activities.secrets.read_secret` finds them: `<dir>/<namespace>/<name>.yaml`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, name: str, data: dict[str, str], namespace: str = NAMESPACE) -> None:
        directory = self.root / namespace
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")


@pytest.fixture
def secrets(secrets_dir: Path) -> SecretStore:
    return SecretStore(secrets_dir)

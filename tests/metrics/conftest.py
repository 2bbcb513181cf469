from __future__ import annotations

from pathlib import Path

import pytest

from activities.secrets import SECRETS_DIR_ENV


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    monkeypatch.setenv(SECRETS_DIR_ENV, str(directory))
    return directory

"""Is there a cluster to talk to? Answered without importing the (slow to import) kubernetes client."""

from __future__ import annotations

import os
from pathlib import Path

from canaryflow.settings import Settings


def default_kubeconfig() -> Path | None:
    for candidate in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser()
    home = Path.home() / ".kube" / "config"
    return home if home.is_file() else None


def kube_configured(settings: Settings) -> bool:
    """True when a kubeconfig or an in-cluster service account is there to use."""
    if settings.kubeconfig is not None or default_kubeconfig() is not None:
        return True
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))

"""fakekube: a faithful in-memory Kubernetes API server for tests (see README.md for what it does and does not do)."""

from .fake import FakeKube
from .faults import RecordedRequest
from .kubelet import Kubelet

__all__ = ["FakeKube", "Kubelet", "RecordedRequest"]

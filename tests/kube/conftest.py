"""Makes the fakekube fixtures (`fake_kube`, `fake_kube_server`) available to every test under tests/kube."""

from tests.fakekube.fixtures import fake_kube, fake_kube_server  # noqa: F401

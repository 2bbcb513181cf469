"""`python -m tests.fakekube --port 0`: serve until interrupted, printing the URL (and writing a kubeconfig)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .fake import FakeKube
from .kubelet import Kubelet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakekube", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", type=Path, help="also write a kubeconfig pointing at the server here")
    parser.add_argument("--fixture-crds", action="store_true", help="register every fixture CRD")
    parser.add_argument("--kubelet", choices=["ready", "stuck", "progress-deadline-exceeded", "off"], default="ready")
    args = parser.parse_args(argv)
    fake = FakeKube()
    url = fake.start(args.port)
    if args.fixture_crds:
        fake.register_fixture_crds()
    if args.kubelet != "off":
        Kubelet(fake, args.kubelet)
    if args.kubeconfig:
        fake.write_kubeconfig(args.kubeconfig)
    print(url, flush=True)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

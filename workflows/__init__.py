"""Workflow definitions and the pure decision logic they call."""

from workflows.release import CanaryRelease

ALL_WORKFLOWS: list[type] = [CanaryRelease]

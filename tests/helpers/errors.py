"""Awaiting something that must fail with a Temporal ApplicationError."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.exceptions import ApplicationError


async def raised(coroutine: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await coroutine
    return caught.value

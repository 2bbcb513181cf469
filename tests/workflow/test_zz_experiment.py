import time
import pytest
from temporalio.testing import WorkflowEnvironment
from tests.workflow.fakes import FakePlatform
from tests.workflow.harness import canary, request, running_release, hook_server, webhook, advance_until

pytestmark = pytest.mark.workflow

async def test_exp(time_skipping_env: WorkflowEnvironment) -> None:
    env = time_skipping_env
    with hook_server() as hooks:
        hooks.answer("gate", 403)
        spec = canary({"webhooks": [webhook("gate", "confirm-rollout", hooks.url("gate"))]})
        platform = FakePlatform()
        async with running_release(env, platform, request(spec)) as run:
            t0 = time.monotonic(); v0 = await env.get_current_time()
            st = await advance_until(run, lambda s: s.phase == "Waiting", step_seconds=1)
            print("waiting after", time.monotonic() - t0, (await env.get_current_time()) - v0, len(hooks.calls("gate")))
            await env.sleep(300)
            print("after 300", time.monotonic() - t0, (await env.get_current_time()) - v0, len(hooks.calls("gate")), (await run.state()).phase)
            hooks.answer("gate", 200)
            r = await run.handle.result()
            print("done", time.monotonic() - t0, (await env.get_current_time()) - v0, len(hooks.calls("gate")), r.phase, platform.route_history)

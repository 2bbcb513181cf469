from tests.e2e.helpers import *
from canaryflow.client import release_state
async def test_dbg(local_stack):
    stack = local_stack
    bad = demo_canary(stack, "again", analysis(stepWeight=20, maxWeight=40, threshold=1))
    h1 = await start(stack, bad, "bad")
    try:
        await rolled_back(h1, timeout=60)
    finally:
        st = await release_state(h1)
        for d in st.decisions: print(d.at.strftime("%H:%M:%S.%f"), d.phase, d.kind, d.message[:110])
        stack.stack.down()

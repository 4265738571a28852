"""How long does a newcomer wait when the alone process's main thread is blocked?
mode sleep: time.sleep (GIL released); mode gil: a long C call holding the GIL; mode idle."""
import subprocess, sys, time, os
mode = sys.argv[1]
path = f"/tmp/attack/a3_{mode}.sqlite"
for suf in ("", "-claims", "-wal", "-shm"):
    try: os.remove(path + suf)
    except FileNotFoundError: pass
alone = subprocess.Popen([sys.executable, "-c", f"""
import time, sys
from llmnet.execute.cache import SampleCache
c = SampleCache({path!r}); print(c.claim('ab'*32), flush=True)
mode = {mode!r}
if mode == 'sleep': time.sleep(6)
elif mode == 'gil':
    t = time.time(); x = sorted(range(60_000_000, 0, -1)); print('sorted took', round(time.time()-t,2), file=sys.stderr, flush=True)
    t = time.time(); import re; re.match(r'(a+)+$', 'a'*27 + 'b'); print('re took', round(time.time()-t,2), file=sys.stderr, flush=True)
elif mode == 'idle':
    import asyncio; asyncio.run(asyncio.sleep(6))
c.close()
"""], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
print("alone process claim:", alone.stdout.readline().strip())
time.sleep(0.3)
t = time.monotonic()
new = subprocess.run([sys.executable, "-c", f"""
import time; t=time.monotonic()
from llmnet.execute.cache import SampleCache
t=time.monotonic(); c = SampleCache({path!r}); print('open waited', round(time.monotonic()-t,3), 'alone', c.alone, 'claim', c.claim('ab'*32))
"""], capture_output=True, text=True)
print(mode, "newcomer:", new.stdout.strip(), new.stderr.strip()[-300:])
alone.wait(); print("alone stderr:", alone.stderr.strip()[-500:])

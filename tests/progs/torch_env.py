# torch_env.py: prints, as one JSON line, the env variables torchrun's agent sets for a worker
# (and is_torchelastic_launched()), with the program's own arguments; t_torchrun.sh runs it
# under torchrun and under `baton run` and diffs the two.
import json
import os
import sys

import torch.distributed as dist

NAMES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS",
         "NCCL_ASYNC_ERROR_HANDLING")
PREFIXES = ("TORCHELASTIC_", "ROLE_", "GROUP_", "LOCAL_")
out = {k: v for k, v in os.environ.items() if k in NAMES or k.startswith(PREFIXES)}
out["is_torchelastic_launched"] = dist.is_torchelastic_launched()
out["argv"] = sys.argv[1:]
out["main"] = __name__
print("ENV " + json.dumps(out, sort_keys=True), flush=True)

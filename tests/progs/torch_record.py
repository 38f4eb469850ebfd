# torch_record.py: a @record-decorated program whose every rank ends in an exception: rank 1
# raises once rank 0 has its SIGTERM handler (rank 0 says so with the file $RECORD_SYNC/ready,
# so that a slow import cannot let the teardown's SIGTERM arrive first); the others raise when
# baton (or torchrun) stops them with SIGTERM. Each rank's exception must land in its own
# TORCHELASTIC_ERROR_FILE.
import os
import signal
import time

from torch.distributed.elastic.multiprocessing.errors import record


def stopped(signum, frame):
    raise RuntimeError(f"rank {os.environ['RANK']} stopped by signal {signum}")


@record
def main():
    rank = int(os.environ["RANK"])
    signal.signal(signal.SIGTERM, stopped)
    ready = os.path.join(os.environ["RECORD_SYNC"], "ready")
    if rank == 0:
        open(ready, "w").close()
    if rank == 1:
        for _ in range(1200):  # bounded: 60 s
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        raise ValueError("boom from rank 1")
    for _ in range(600):  # bounded: 60 s
        time.sleep(0.1)


main()

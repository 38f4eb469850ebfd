# torch_record.py: a @record-decorated program whose every rank ends in an exception: rank 1
# raises at once; the others raise when baton (or torchrun) stops them with SIGTERM. Each
# rank's exception must land in its own TORCHELASTIC_ERROR_FILE.
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
    if rank == 1:
        raise ValueError("boom from rank 1")
    for _ in range(600):  # bounded: 60 s
        time.sleep(0.1)


main()

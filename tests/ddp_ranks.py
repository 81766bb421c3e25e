"""Helper of test_train.py, run as `torchrun ... tests/ddp_ranks.py KEEP_DIR NAME [flags]`: train.py's
own command line on this rank, and then this rank's weights saved to KEEP_DIR/rank{RANK}.pt, so the
test can compare what the ranks hold (train.py itself writes from rank 0 only)."""
import os
import sys

import torch

import train

keep_dir, argv = sys.argv[1], sys.argv[2:]
train_as_usual = train.training_loop


def train_and_keep_weights(model, *args, **kwargs):
    run = train_as_usual(model, *args, **kwargs)
    torch.save(model.state_dict(), os.path.join(keep_dir, f"rank{os.environ.get('RANK', '0')}.pt"))
    return run


train.training_loop = train_and_keep_weights
sys.exit(train.main(argv))

"""Two gloo processes on the CPU train exactly what one process does with the same global batch."""

import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sdn.checkpoint import load_checkpoint
from sdn.errors import UserError
from sdn.training import training_loop

RUN = {"teacher": "efficientnet-lite0", "text_encoder": "test-hash", "fc_dim": 32, "batch_size": 8, "progress": False,
       "precision": "fp32", "stage1_epochs": 1, "stage2_epochs": 1, "seed": 2}


def _tiny_data():
    from test_training import tiny_data

    return tiny_data.__wrapped__()  # 18 train images: batches of 8, 8 and 2 (rank 1 gets none of the last)


def _worker(rank: int, world_size: int, folder: str) -> None:
    from conftest import HashEncoder

    from sdn import text

    text.TEXT_ENCODERS[HashEncoder.name] = HashEncoder
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world_size)
    data = _tiny_data()
    outcome = {}
    try:  # a rank started with other arguments: every rank stops with the same clear error
        training_loop(data, f"{folder}/mismatch", **{**RUN, "fc_dim": 32 + 16 * rank})
    except UserError as e:
        outcome["mismatch"] = str(e)
    path = training_loop(data, f"{folder}/run", **RUN)
    outcome["path"] = str(path)
    with open(f"{folder}/rank{rank}.json", "w") as f:
        json.dump(outcome, f)
    dist.destroy_process_group()


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    outcomes = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for outcome in outcomes:
        assert "fc_dim=32 on rank 0 but 48 on rank 1" in outcome["mismatch"]
    two = load_checkpoint(outcomes[0]["path"])
    one = load_checkpoint(training_loop(_tiny_data(), tmp_path / "single", **RUN))
    assert [s for s, *_ in two["history"]] == [s for s, *_ in one["history"]] == [1, 2, 3, 4, 5, 6]
    # fp32; only the order of the sums differs (per-process means, then the sum over processes)
    assert [v for *_, v in two["history"]] == pytest.approx([v for *_, v in one["history"]], rel=1e-5)
    # Adam scales each element's step to about lr whatever its gradient, so an element whose gradient is
    # rounding noise may move by up to lr (1e-4) either way: weights agree within 3 lr, and all but
    # 0.1 % of them within 1e-5.
    diffs = torch.cat([(two["generator"][k] - w).abs().flatten() for k, w in one["generator"].items()])
    assert diffs.max() < 3e-4 and (diffs > 1e-5).float().mean() < 1e-3
    # rank 0 alone wrote: one log line per step, not two
    assert len((tmp_path / "run" / "stats.jsonl").read_text().splitlines()) == 6

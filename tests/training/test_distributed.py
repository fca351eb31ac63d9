"""training/distributed.py: alone, every collective is the identity; in a real two-process gloo group, ranks
split the global batch, add up, and follow rank 0's decisions."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
from pathlib import Path

from modelbuilder.training.distributed import CANCEL, CONTINUE, Dist, from_environment, shutdown


def test_alone_every_collective_is_the_identity(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    alone = from_environment()
    assert alone == Dist()
    assert (alone.main, alone.enabled) == (True, False)
    assert alone.shard(list(range(5))) == [0, 1, 2, 3, 4]
    assert alone.sum([1.5, 2.0]) == [1.5, 2.0]
    assert alone.decide(CANCEL) == CANCEL
    assert alone.share({"x": 1}) == {"x": 1}
    alone.barrier()  # nothing to wait for


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)})
    d = from_environment()
    try:
        said = {"rank": d.rank, "main": d.main, "shard": d.shard(list(range(8))), "sum": d.sum([rank + 1.0, 10.0]),
                "decide": d.decide(CANCEL if d.main else CONTINUE),
                "share": d.share({"head": "rank 0's"} if d.main else None)}
        d.barrier()
    finally:
        shutdown(d)
    Path(out, f"{rank}.json").write_text(json.dumps(said))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_two_ranks_split_add_up_and_follow_rank_0(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    ranks = [context.Process(target=_rank, args=(rank, port, str(tmp_path))) for rank in (0, 1)]
    for process in ranks:
        process.start()
    try:
        for process in ranks:
            process.join(180)
        assert [process.exitcode for process in ranks] == [0, 0]
    finally:
        for process in ranks:
            if process.is_alive():
                process.kill()
    zero, one = (json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1))
    assert (zero["main"], one["main"]) == (True, False)
    assert (zero["shard"], one["shard"]) == ([0, 2, 4, 6], [1, 3, 5, 7])  # together, the one global batch
    assert zero["sum"] == one["sum"] == [3.0, 20.0]
    assert zero["decide"] == one["decide"] == CANCEL  # rank 0's stop, on every rank
    assert zero["share"] == one["share"] == {"head": "rank 0's"}

"""`laser-bench longbench` end to end against a small in-process fake of the Laser service.

The fake answers from the gold answers (some candidates right, some wrong), so the whole CLI
path (server I/O, cache, methods, JSON, table, plot) runs in a second without any model. The
real-server check is test_longbench_e2e.py.
"""

from __future__ import annotations

import contextlib
import json
import sys
import types
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from laser_bench.cli import main as bench_main

from laser_serve.api import pb, rpc

RMS = ("judge", "overlap")


class FakeLaser(rpc.LaserServicer):
    """Candidates: the question's answer word and distractors; `judge` prefers the answer."""

    def __init__(self) -> None:
        self.reranks = 0

    def GetServerInfo(self, request, context):  # noqa: N802 -- gRPC method name
        return pb.ServerInfo(
            policy_model="fake/policy", generator="fake", context_dim=3, max_n=8, tasks=["default"]
        )

    def ListRewardModels(self, request, context):  # noqa: N802
        return pb.ListRewardModelsResponse(
            reward_models=[pb.RewardModelInfo(name=n, kind="embedding") for n in RMS]
        )

    def Rerank(self, request, context):  # noqa: N802
        self.reranks += 1
        if request.task not in ("", "default"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "task: not allowed")
        prompt = request.prompt or request.messages[0].content
        answer = prompt.split("ANSWER=")[1].split()[0]
        n = request.sampling.n
        texts = [answer if j % 2 == 0 else f"wrong{j}" for j in range(n)]
        resp = pb.RerankResponse(chosen_text=texts[0], context=[1.0, len(prompt) % 3, 0.5])
        for j, text in enumerate(texts):
            right = float(text == answer)
            resp.candidates.add(
                text=text,
                mean_logprob=-1.0 + right,
                rm_scores={"judge": right, "overlap": float(j)} if request.score_with_all else {},
            )
        resp.timings.generate_seconds = 0.25
        resp.timings.rm_seconds.update({"judge": 0.5, "overlap": 0.05})
        return resp


@pytest.fixture()
def fake_server() -> Iterator[tuple[str, FakeLaser]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = FakeLaser()
    rpc.add_LaserServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


def write_data(root: Path) -> None:
    for task, count in (("hotpotqa", 5), ("triviaqa", 4)):
        rows = [
            {
                "input": f"question {i}? ANSWER=ans{i}",
                "context": f"context {i} " * (i + 1),
                "answers": [f"ans{i}"],
                "length": i,
                "dataset": task,
                "language": "en",
                "all_classes": None,
                "_id": None,
            }
            for i in range(count)
        ]
        (root / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_cli_runs_every_method_and_caches(
    tmp_path: Path, fake_server: tuple[str, FakeLaser], capsys: pytest.CaptureFixture[str]
) -> None:
    target, servicer = fake_server
    write_data(tmp_path)
    out, plot = tmp_path / "results.json", tmp_path / "selection.png"
    argv = [
        "longbench", "--server", target, "--data", str(tmp_path), "--cache-dir",
        str(tmp_path / "cache"), "--n", "4", "--seeds", "2", "--limit", "4", "--shortest",
        "--out", str(out), "--plot", str(plot), "--max-new-tokens", "8",
    ]  # fmt: skip
    assert bench_main(argv) == 0
    table = capsys.readouterr().out
    assert "oracle (upper bound)" in table and "average over 2 task(s)" in table
    assert servicer.reranks == 2 * 8  # pooled + greedy call per example

    res = json.loads(out.read_text())
    assert set(res["tasks"]) == {"hotpotqa", "triviaqa"}
    for rows in res["tasks"].values():
        assert rows["rm:judge"]["score"] == 100.0 == rows["oracle"]["score"]
        assert rows["rm:overlap"]["score"] == 0.0  # prefers the last candidate, a wrong one
        assert rows["greedy"]["score"] == 100.0
        assert rows["ensemble"]["rm_calls_per_example"] == 2
        assert rows["ensemble"]["rm_seconds_per_example"] == pytest.approx(0.55)
        for method, row in rows.items():
            assert 0 <= row["score"] <= 100
            assert row["ci_low"] <= row["score"] + 1e-9 <= row["ci_high"] + 2e-9, method
    assert res["config"]["policy_model"] == "fake/policy"
    assert res["config"]["max_new_tokens"] == {"hotpotqa": 8, "triviaqa": 8}
    assert res["average"]["oracle"] == 100.0
    assert plot.read_bytes()[:4] == b"\x89PNG"

    # Second run: every pool comes from the cache, the numbers are the same.
    argv_json = [a for a in argv if a not in ("--plot", str(plot))] + ["--json"]
    assert bench_main(argv_json) == 0
    assert servicer.reranks == 16
    again = json.loads(capsys.readouterr().out)
    assert again["config"]["cache_hits"] == 8
    assert again["tasks"] == res["tasks"]


def test_cli_reports_server_errors_without_traceback(
    tmp_path: Path, fake_server: tuple[str, FakeLaser], capsys: pytest.CaptureFixture[str]
) -> None:
    target, _ = fake_server
    write_data(tmp_path)
    argv = ["longbench", "--server", target, "--data", str(tmp_path), "--n", "16"]
    assert bench_main(argv + ["--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "exceeds the server's max_n 8" in err and "Traceback" not in err


def test_without_server_flag_the_embedded_server_gets_the_server_args(
    tmp_path: Path,
    fake_server: tuple[str, FakeLaser],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target, servicer = fake_server
    started: list[list[str]] = []

    @contextlib.contextmanager
    def running_server(args: list[str] = (), timeout: float = 900) -> Iterator[str]:
        started.append(list(args))
        yield target

    module = types.ModuleType("laser_serve.server.testing")
    module.running_server = running_server
    monkeypatch.setitem(sys.modules, "laser_serve.server.testing", module)
    write_data(tmp_path)
    argv = [
        "longbench", "--data", str(tmp_path), "--tasks", "triviaqa", "--limit", "2", "--n", "2",
        "--cache-dir", str(tmp_path / "c"), "--server-arg=--generator", "--server-arg", "hf",
        "--methods", "greedy", "oracle",
    ]  # fmt: skip
    assert bench_main(argv) == 0
    assert started == [["--generator", "hf"]]
    assert servicer.reranks == 4
    assert "oracle (upper bound)" in capsys.readouterr().out

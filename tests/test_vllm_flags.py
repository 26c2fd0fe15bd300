"""The vLLM command lines the program renders parse with the pinned vLLM's own `vllm serve`
options (recorded from vllm.entrypoints.openai.cli_args.make_arg_parser by
`python -m tools.vllm_flags --extract`; see that module for why a record and how to redo it)."""
from __future__ import annotations

import pytest

from components.serving.catalog import get_runtime_image
from tests import stack_runs
from tools import vllm_flags

RECORD = vllm_flags.load_record()


def test_the_record_comes_from_the_vllm_release_the_catalog_pins():
    assert RECORD["parser"] == "vllm.entrypoints.openai.cli_args.make_arg_parser"
    assert RECORD["vllm_version"] == get_runtime_image("vllm").tag.removeprefix("v")
    options = {o for a in RECORD["actions"] for o in a["option_strings"]}
    # The MoE and multi-node options this project renders exist in that release.
    assert {"--enable-expert-parallel", "--data-parallel-size", "--pipeline-parallel-size",
            "--distributed-executor-backend", "--tensor-parallel-size"} <= options


@pytest.mark.parametrize("stack, model, args", vllm_flags.rendered_command_lines(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_every_rendered_vllm_command_line_parses(stack, model, args):
    parsed = vllm_flags.check_args(args, RECORD)
    assert parsed.model_tag == args[0]
    flags = dict(zip(args[1::2], args[2::2]))
    assert parsed.tensor_parallel_size == int(flags["--tensor-parallel-size"])
    assert parsed.max_model_len == int(flags["--max-model-len"])


def test_the_flagship_layouts_parse_with_their_parallelism():
    by_model = {m: a for s, m, a in vllm_flags.rendered_command_lines() if s == "flagship"}
    r1 = vllm_flags.check_args(by_model["r1"], RECORD)
    assert (r1.tensor_parallel_size, r1.pipeline_parallel_size, r1.distributed_executor_backend) == (8, 2, "ray")
    v3 = vllm_flags.check_args(by_model["v3"], RECORD)
    assert (v3.tensor_parallel_size, v3.data_parallel_size, v3.enable_expert_parallel) == (1, 8, True)
    # The LeaderWorkerSet leader runs exactly those arguments after bash's $0.
    lws = stack_runs.preview_run("flagship").one(
        "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet", "r1-leader-worker-set").inputs
    leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]["args"][1:]
    assert leader == by_model["r1"]


@pytest.mark.parametrize("change, fragment", [
    (lambda a: a + ["--enable-prompt-logging"], "unrecognized arguments"),
    (lambda a: a + ["--tensor-parallel-size"], "expected one argument"),
    (lambda a: a + ["--max-num-seqs", "many"], "invalid int value"),
    (lambda a: a + ["--allowed-origins", "not json"], "invalid loads value"),
])
def test_a_command_line_vllm_would_refuse_is_refused(change, fragment):
    (args,) = [a for s, m, a in vllm_flags.rendered_command_lines() if (s, m) == ("dev", "r1-qwen-7b")]
    with pytest.raises(vllm_flags.FlagError, match=fragment):
        vllm_flags.check_args(change(list(args)), RECORD)

"""DeepSeek-R1/V3 671B in production: MoE sizing, multi-node replicas on EKS, weights storage,
and reserved capacity (issue 15).

The committed `flagship` stack serves R1 across two p5.48xlarge per replica (LeaderWorkerSet,
vLLM on Ray, EFA) and V3 on one p5e.48xlarge (data-parallel attention with expert
parallelism); both pools keep pod storage on the instance store.
"""
from __future__ import annotations

import base64
import email
import gzip
import json

import pytest
import yaml

from components.config import InventoryError, parse_inventory
from components.eks import model_service
from components.serving import catalog, sizing, storage
from tests import stack_runs
from tools import k8s_objects

LWS_TYPE = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
R1 = catalog.get_model("deepseek-r1")
V3 = catalog.get_model("deepseek-v3")


def _plan(instance: str, **kwargs):
    return sizing.plan_runtime(R1, catalog.get_instance(instance), runtime="vllm", max_context=32768,
                               stack="test", model_name="r1", **kwargs)


# --- sizing --------------------------------------------------------------------------------

def test_mla_kv_per_token_is_the_latent_per_layer_and_not_split_by_tensor_parallelism():
    per_token = 61 * (512 + 64) * 2  # layers x (kv_lora_rank + qk_rope_head_dim) x bf16
    for tp in (1, 2, 8):
        assert sizing.kv_bytes_per_token(R1, tensor_parallel=tp) == per_token
    single = _plan("p5e.48xlarge")
    assert single.memory.kv_bytes_per_token == per_token


def test_r1_does_not_fit_one_h100_node_and_the_refusal_proposes_two_nodes_or_h200():
    with pytest.raises(sizing.SizingError) as caught:
        _plan("p5.48xlarge")
    message = str(caught.value)
    assert "pipeline_parallel 2" in message and "p5e.48xlarge" in message


def test_r1_on_h200_defaults_to_tensor_parallel_eight():
    plan = _plan("p5e.48xlarge")
    assert plan.tensor_parallel == 8 and plan.gpus_per_replica == 8
    assert plan.cli_args()[plan.cli_args().index("--tensor-parallel-size") + 1] == "8"
    assert "--data-parallel-size" not in plan.cli_args()


def test_experts_split_over_all_ranks_while_attention_is_replicated_per_data_parallel_rank():
    experts = sizing.routed_expert_bytes(R1, "fp8")
    dense = sizing.weight_bytes(R1, "fp8") - experts
    # 58 MoE layers x 256 experts x 3 projections x 7168 x 2048, about 654B parameters.
    assert R1.routed_expert_params == 58 * 256 * 3 * 7168 * 2048
    assert sizing.weight_bytes_per_gpu(R1, "fp8", tensor_parallel=1, data_parallel=8) == pytest.approx(
        dense + experts / 8)
    assert sizing.weight_bytes_per_gpu(R1, "fp8", tensor_parallel=8) == pytest.approx((dense + experts) / 8)
    assert sizing.weight_bytes_per_gpu(R1, "fp8", tensor_parallel=8, pipeline_parallel=2) == pytest.approx(
        (dense + experts) / 16)


def test_each_data_parallel_rank_holds_its_own_kv_cache():
    plan = _plan("p5e.48xlarge", data_parallel=8, expert_parallel=True)
    args = plan.cli_args()
    assert plan.tensor_parallel == 1 and plan.gpus_per_replica == 8
    assert args[args.index("--data-parallel-size") + 1] == "8" and "--enable-expert-parallel" in args
    # Replica capacity is eight engines' worth; --max-num-seqs stays per engine.
    assert plan.kv_capacity_tokens == 8 * plan.memory.kv_capacity_tokens
    assert plan.running_slots == 8 * int(args[args.index("--max-num-seqs") + 1])
    # Replicated attention costs each rank more weight memory than TP=8, so less KV per rank.
    assert plan.memory.kv_capacity_tokens < _plan("p5e.48xlarge").memory.kv_capacity_tokens


def test_pipeline_stages_hold_only_their_layers_kv():
    plan = _plan("p5.48xlarge", pipeline_parallel=2)
    assert plan.gpus_per_replica == 16 and plan.nodes_per_replica == 2 and plan.gpus_per_node == 8
    assert plan.memory.kv_bytes_per_token == -(-61 * 576 * 2 * 31 // 61)
    assert plan.cli_args()[plan.cli_args().index("--pipeline-parallel-size") + 1] == "2"


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(data_parallel=3), "needs 12 GPUs but p5e.48xlarge has 8"),
    (dict(data_parallel=2, pipeline_parallel=2), "not both"),
])
def test_parallel_layouts_the_node_cannot_hold_are_refused(kwargs, fragment):
    kwargs.setdefault("tensor_parallel", 4)
    with pytest.raises(sizing.SizingError, match=fragment):
        _plan("p5e.48xlarge", **kwargs)


def test_moe_options_are_refused_for_dense_models_and_other_runtimes():
    dense = catalog.get_model("deepseek-r1-distill-qwen-7b")
    with pytest.raises(sizing.SizingError, match="MoE"):
        sizing.plan_runtime(dense, catalog.get_instance("g6e.12xlarge"), runtime="vllm", max_context=8192,
                            stack="t", model_name="m", expert_parallel=True)
    with pytest.raises(sizing.SizingError, match="vLLM options"):
        sizing.plan_runtime(dense, catalog.get_instance("g6e.12xlarge"), runtime="tgi", max_context=8192,
                            stack="t", model_name="m", pipeline_parallel=2)


# --- inventory: EC2 refusal, capacity reservations, storage fit ------------------------------

def _r1_on_ec2(inventory: dict, **model) -> None:
    # dev's region (us-east-1) does not offer p5e.48xlarge; us-east-2 does.
    moved = json.loads(json.dumps(inventory).replace("us-east-1", "us-east-2"))
    inventory.clear()
    inventory.update(moved)
    inventory["models"][0].update(hf_repo="deepseek-ai/DeepSeek-R1", instance_type="p5e.48xlarge",
                                  max_context=32768, **model)


def test_ec2_refuses_a_multi_node_model_and_says_to_use_eks():
    inventory = stack_runs.inventory_of("dev")
    _r1_on_ec2(inventory, pipeline_parallel=2)
    with pytest.raises(InventoryError) as caught:
        parse_inventory(inventory, stack="dev", secret_keys={"deepseek-serving:smokeKey"})
    message = str(caught.value)
    assert "stacks/Pulumi.dev.yaml" in message and "models[0].pipeline_parallel" in message
    assert "platform eks" in message


@pytest.mark.parametrize("reservation, fragment", [
    ({"market_type": "capacity-block", "reservation_id": "cr-0123456789abcdef0"}, "Capacity Blocks for ML are sold for"),
    ({"market_type": "spot", "reservation_id": "cr-0123456789abcdef0"}, "'capacity-block'"),
    ({"market_type": "on-demand", "reservation_id": "odcr-1"}, "capacity_reservation.reservation_id"),
])
def test_capacity_reservations_are_validated(reservation, fragment):
    inventory = stack_runs.inventory_of("staging")
    inventory["eks"]["gpu_pools"][0]["capacity_reservation"] = reservation  # g6e: no Capacity Blocks
    with pytest.raises(InventoryError, match=fragment):
        parse_inventory(inventory, stack="staging")


def _fit(stack: str, change) -> None:
    inventory = stack_runs.inventory_of(stack)
    change(inventory)
    parsed = parse_inventory(inventory, stack=stack, secret_keys=set(stack_runs.stack_files.load(stack).secret_keys))
    for model in parsed.models:
        from components.serving.runtimes import render_for_inventory
        storage.check_storage(parsed, model, render_for_inventory(parsed, model).weights_gib)


def test_671b_weights_on_a_root_volume_are_refused_with_the_fix():
    def root_volume(inventory):
        inventory["eks"]["gpu_pools"][1]["local_storage"] = "ebs"  # h200, 300 GiB root volume

    with pytest.raises(storage.StorageError) as caught:
        _fit("flagship", root_volume)
    message = str(caught.value)
    assert "eks.gpu_pools[1]" in message and "never be scheduled" in message
    assert "local_storage: instance_store" in message and "root_volume_gib: " in message
    needed = int(message.split("root_volume_gib: ")[1].split()[0].rstrip("."))

    def bigger_root(inventory):
        root_volume(inventory)
        inventory["eks"]["gpu_pools"][1]["root_volume_gib"] = needed

    _fit("flagship", bigger_root)  # the proposed root volume fits


def test_the_instance_store_takes_the_671b_pods():
    _fit("flagship", lambda inventory: None)
    r1 = stack_runs.preview_run("flagship").one(LWS_TYPE, "r1-leader-worker-set").inputs
    pod = r1["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
    requested = int(pod["containers"][0]["resources"]["requests"]["ephemeral-storage"].rstrip("Gi"))
    assert requested > 600  # the weights are staged on the node
    assert requested <= storage.node_ephemeral_gib(
        next(p for p in parse_inventory(stack_runs.inventory_of("flagship"), stack="flagship").eks.gpu_pools
             if p.name == "h100-efa"), catalog.get_instance("p5.48xlarge"))


def test_ec2_instance_store_needs_an_instance_that_has_one():
    with pytest.raises(storage.StorageError, match="models\\[0\\].local_storage.*no instance store"):
        _fit("dev", lambda inv: inv["models"][0].update(local_storage="instance_store"))
    _fit("dev", lambda inv: _r1_on_ec2(inv, local_storage="instance_store"))


# --- the flagship stack: multi-node objects ---------------------------------------------------

@pytest.fixture(scope="module")
def run():
    return stack_runs.preview_run("flagship")


@pytest.fixture(scope="module")
def lws(run):
    return run.one(LWS_TYPE, "r1-leader-worker-set").inputs


def _templates(lws: dict) -> tuple[dict, dict]:
    group = lws["spec"]["leaderWorkerTemplate"]
    return group["leaderTemplate"], group["workerTemplate"]


def test_a_replica_is_a_group_of_two_pods_restarted_together(lws):
    group = lws["spec"]["leaderWorkerTemplate"]
    assert int(group["size"]) == 2
    assert group["restartPolicy"] == "RecreateGroupOnPodRestart"
    assert lws["spec"]["startupPolicy"] == "LeaderCreated"
    assert lws["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert lws["spec"]["replicas"] == stack_runs.inventory_of("flagship")["models"][0]["min_replicas"]


def test_the_leader_starts_the_ray_head_then_serves_with_the_sized_flags(lws):
    leader, _ = _templates(lws)
    container = leader["spec"]["containers"][0]
    assert container["command"][:2] == ["/bin/bash", "-c"]
    script = container["command"][2]
    assert "multi-node-serving.sh leader" in script and '--ray_cluster_size="$LWS_GROUP_SIZE"' in script
    assert script.endswith('exec vllm serve "$@"')
    serve = container["args"][1:]  # args[0] is bash's $0
    flags = dict(zip(serve[1::2], serve[2::2]))
    assert serve[0] == "/models/r1"
    assert flags["--tensor-parallel-size"] == "8"
    assert int(flags["--pipeline-parallel-size"]) == int(lws["spec"]["leaderWorkerTemplate"]["size"])
    assert flags["--distributed-executor-backend"] == "ray"


def test_workers_join_the_leader_and_match_it_in_image_gpus_efa_env_and_weights(lws):
    leader, worker = _templates(lws)
    lead, work = leader["spec"]["containers"][0], worker["spec"]["containers"][0]
    assert "multi-node-serving.sh worker" in work["command"][2]
    assert '--ray_address="$LWS_LEADER_ADDRESS"' in work["command"][2]
    assert "vllm serve" not in " ".join(work["command"])
    assert lead["image"] == work["image"]
    assert lead["resources"] == work["resources"]
    assert lead["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert lead["resources"]["limits"][model_service.EFA_RESOURCE] == "32"
    env = lambda c: {e["name"]: e.get("value") for e in c["env"]}  # noqa: E731
    assert env(lead) == env(work)
    assert env(lead)["FI_PROVIDER"] == "efa" and env(lead)["FI_EFA_USE_DEVICE_RDMA"] == "1"
    # Every node stages and verifies the same weights before anything starts.
    assert leader["spec"]["initContainers"] == worker["spec"]["initContainers"]
    assert leader["spec"]["volumes"] == worker["spec"]["volumes"]


def test_probes_port_and_metrics_are_on_the_leader_only(lws):
    leader, worker = _templates(lws)
    lead, work = leader["spec"]["containers"][0], worker["spec"]["containers"][0]
    assert {"startupProbe", "readinessProbe", "livenessProbe", "ports"} <= set(lead)
    assert not {"startupProbe", "readinessProbe", "livenessProbe", "ports"} & set(work)
    assert leader["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert not any(k.startswith("prometheus.io/") for k in worker["metadata"].get("annotations", {}))
    assert leader["metadata"]["labels"]["role"] == "leader" and worker["metadata"]["labels"]["role"] == "worker"


def test_one_service_selects_the_leader_and_the_pdb_and_autoscaler_act_per_group(run):
    service = run.one("kubernetes:core/v1:Service", "r1-service").inputs
    assert service["spec"]["selector"]["role"] == "leader"
    scaled = run.one("kubernetes:keda.sh/v1alpha1:ScaledObject", "r1-scaled-object").inputs
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "leaderworkerset.x-k8s.io/v1",
                                                "kind": "LeaderWorkerSet", "name": "r1"}
    pdb = run.one("kubernetes:policy/v1:PodDisruptionBudget", "r1-pdb").inputs
    assert pdb["spec"]["maxUnavailable"] == 1 and "role" not in pdb["spec"]["selector"]["matchLabels"]
    policy = run.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", "r1-network-policy").inputs
    own = policy["spec"]["podSelector"]["matchLabels"]
    peers = [r for r in policy["spec"]["ingress"]
             if r["from"] == [{"podSelector": {"matchLabels": own}}] and "ports" not in r]
    assert len(peers) == 1  # the group's own pods, on every port (Ray, NCCL)


def test_single_node_models_keep_their_deployment(run):
    assert run.one("kubernetes:apps/v1:Deployment", "v3-deployment")
    assert not [r for r in run.by_type(LWS_TYPE) if r.name.startswith("v3")]


def test_the_lws_controller_and_efa_device_plugin_are_pinned_releases(run):
    releases = {r.inputs["name"]: r.inputs for r in run.by_type("kubernetes:helm.sh/v3:Release")}
    assert releases["lws"]["chart"] == "oci://registry.k8s.io/lws/charts/lws"
    assert releases["lws"]["version"] == "0.9.0" and "repositoryOpts" not in releases["lws"]
    efa = releases["aws-efa-k8s-device-plugin"]
    assert efa["version"] and efa["values"]["nodeSelector"] == {"deepseek-serving/efa": "true"}
    staging = {r.inputs["name"] for r in stack_runs.preview_run("staging").by_type("kubernetes:helm.sh/v3:Release")}
    assert not {"lws", "aws-efa-k8s-device-plugin"} & staging


def test_efa_pool_has_its_security_group_placement_group_and_interfaces(run):
    rules = [r.inputs for r in run.by_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
             + run.by_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule") if "efa" in r.name]
    assert len(rules) == 2 and all(r["ipProtocol"] == "-1" for r in rules)
    (placement,) = run.by_type("aws:ec2/placementGroup:PlacementGroup")
    assert placement.inputs["strategy"] == "cluster"
    template = run.one("aws:ec2/launchTemplate:LaunchTemplate", "eks-pool-h100-efa-lt").inputs
    interfaces = template["networkInterfaces"]
    assert len(interfaces) == 32 and {i["interfaceType"] for i in interfaces} == {"efa"}
    assert sorted(i["networkCardIndex"] for i in interfaces) == list(range(32))
    assert all(i["associatePublicIpAddress"] == "false" and len(i["securityGroups"]) == 2 for i in interfaces)
    group = run.one("aws:eks/nodeGroup:NodeGroup", "eks-pool-h100-efa").inputs
    assert len(group["subnetIds"]) == 1  # a cluster placement group is one AZ


def test_instance_store_pools_tell_nodeadm_to_raid0_the_nvme(run):
    for pool in ("h100-efa", "h200"):
        template = run.one("aws:ec2/launchTemplate:LaunchTemplate", f"eks-pool-{pool}-lt").inputs
        message = email.message_from_string(base64.b64decode(template["userData"]).decode())
        (part,) = [p for p in message.walk() if p.get_content_type() == "application/node.eks.aws"]
        config = yaml.safe_load(part.get_payload())
        assert config["kind"] == "NodeConfig"
        assert config["spec"]["instance"]["localStorage"]["strategy"] == "RAID0"
    system = run.one("aws:ec2/launchTemplate:LaunchTemplate", "eks-system-lt").inputs
    assert "userData" not in system


def test_launch_templates_target_the_reservation_and_capacity_blocks_use_their_market(run):
    block = run.one("aws:ec2/launchTemplate:LaunchTemplate", "eks-pool-h100-efa-lt").inputs
    assert block["instanceMarketOptions"] == {"marketType": "capacity-block"}
    assert block["capacityReservationSpecification"]["capacityReservationTarget"][
        "capacityReservationId"] == "cr-0a1b2c3d4e5f60718"
    assert run.one("aws:eks/nodeGroup:NodeGroup", "eks-pool-h100-efa").inputs["capacityType"] == "CAPACITY_BLOCK"
    reserved = run.one("aws:ec2/launchTemplate:LaunchTemplate", "eks-pool-h200-lt").inputs
    assert "instanceMarketOptions" not in reserved
    assert reserved["capacityReservationSpecification"]["capacityReservationTarget"][
        "capacityReservationId"] == "cr-08f7e6d5c4b3a2918"
    assert run.one("aws:eks/nodeGroup:NodeGroup", "eks-pool-h200").inputs["capacityType"] == "ON_DEMAND"


def test_ec2_launch_templates_take_the_reservation_too():
    reservation = {"market_type": "capacity-block", "reservation_id": "cr-0123456789abcdef0"}
    ec2 = stack_runs.run_with_inventory("dev", extra_config={"aws:region": "us-east-2"}, change=lambda inv: _r1_on_ec2(
        inv, local_storage="instance_store", capacity_reservation=reservation))
    template = ec2.one("aws:ec2/launchTemplate:LaunchTemplate", "r1-qwen-7b-lt").inputs
    assert template["instanceMarketOptions"] == {"marketType": "capacity-block"}
    assert template["capacityReservationSpecification"]["capacityReservationTarget"][
        "capacityReservationId"] == "cr-0123456789abcdef0"


def test_the_multi_node_objects_validate_against_the_schemas(run):
    results = k8s_objects.validate_all(run.registrations, "1.33")
    assert k8s_objects.failures(results) == []
    (lws,) = [r for r in results if r.obj.kind == "LeaderWorkerSet"]
    assert lws.status == "valid"


def test_a_misspelled_leader_worker_set_field_fails_validation(run):
    (obj,) = [o for o in k8s_objects.objects(run.registrations) if o.kind == "LeaderWorkerSet"]
    for path, breakage in (
            (("spec", "leaderWorkerTemplate"), lambda node: node.update(sise=2)),
            (("spec", "leaderWorkerTemplate"), lambda node: node.update(restartPolicy="Always")),
            (("spec", "leaderWorkerTemplate", "workerTemplate", "spec", "containers", 0),
             lambda node: node.update(imagePullPolicyy="Always"))):
        broken = k8s_objects.K8sObject(urn=obj.urn, resource_name=obj.resource_name, type_token=obj.type_token,
                                       manifest=yaml.safe_load(yaml.safe_dump(obj.manifest)))
        node = broken.manifest
        for part in path:
            node = node[part]
        breakage(node)
        assert k8s_objects.validate(broken, "1.33").status == "invalid"


def test_ec2_instance_store_is_assembled_at_boot_instead_of_a_cache_volume():
    from components.ec2 import host

    ec2 = stack_runs.run_with_inventory("dev", extra_config={"aws:region": "us-east-2"}, change=lambda inv: _r1_on_ec2(inv, local_storage="instance_store"))
    template = ec2.one("aws:ec2/launchTemplate:LaunchTemplate", "r1-qwen-7b-lt").inputs
    devices = [d["deviceName"] for d in template["blockDeviceMappings"]]
    assert host.CACHE_DEVICE not in devices and len(devices) == 1
    raw = base64.b64decode(template["userData"])
    # Over 16 KB as text, so sent gzipped (cloud-init unpacks it).
    config = yaml.safe_load(gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode())
    assert "fs_setup" not in config and "mounts" not in config
    (boot,) = config["bootcmd"]
    script = boot[-1]
    assert "mdadm -C" in script and "-l 0" in script and "mkfs.xfs" in script
    assert f"LABEL={host.CACHE_LABEL} {host.CACHE_MOUNT}" in script


def test_every_runtime_runs_on_every_platform_in_some_committed_stack():
    combinations = set()
    for stack in stack_runs.STACKS:
        inventory = stack_runs.inventory_of(stack)
        combinations |= {(inventory["platform"], m["runtime"]) for m in inventory["models"]}
    assert combinations == {(p, r) for p in ("ec2", "eks") for r in ("vllm", "tgi", "ollama")}


def test_a_committed_stack_serves_r1_671b_on_eks_across_nodes_and_v3_on_one_h200_node():
    inventory = parse_inventory(stack_runs.inventory_of("flagship"), stack="flagship")
    pools = {p.name: p for p in inventory.eks.gpu_pools}
    served = {m.hf_repo: (m, pools[m.node_pool]) for m in inventory.models}
    r1, r1_pool = served["deepseek-ai/DeepSeek-R1"]
    assert inventory.platform == "eks" and r1.pipeline_parallel == 2 and r1_pool.instance_type == "p5.48xlarge"
    v3, v3_pool = served["deepseek-ai/DeepSeek-V3"]
    assert v3.pipeline_parallel == 1 and v3_pool.instance_type == "p5e.48xlarge"


def test_rollout_headroom_counts_a_multi_node_replica_as_whole_nodes():
    from components.serving.rollout import PoolDemand, nodes_for_rollout

    # Two replicas of two 8-GPU nodes each, plus one surge group: six nodes.
    assert nodes_for_rollout([PoolDemand("r1", 2, 16)], 8) == 6
    # A data-parallel replica fills its node (TP 1 x DP 8 = 8 GPUs): three nodes.
    assert nodes_for_rollout([PoolDemand("v3", 2, 8)], 8) == 3

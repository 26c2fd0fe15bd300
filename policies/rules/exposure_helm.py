"""Family 1 for Helm: a release or chart exposes nothing its values do not make internal.

The pack cannot render a chart (no network, no helm), so what a release deploys is judged
from its values, generically, the way charts conventionally spell exposure:
- any `service`-like mapping with a `type` (controller.service.type, proxy.service.type,
  service.type ...) and its `annotations`, judged like a Service;
- `hostNetwork: true` and `hostPort` anywhere (a number, or {enabled: true} as
  ingress-nginx spells it), and pod specs embedded in values;
- `ingress` mappings that are enabled, judged like an Ingress (class and annotations);
- the defaults of well-known charts that expose by default (ingress controllers and
  gateways whose controller Service is a LoadBalancer unless values say otherwise).

It fails closed where values cannot be judged: values unknown during preview, value files
the pack cannot read, post-renderers, keys whose meaning is chart-specific (externalAccess,
expose, publicAccess ...), and ingress or gateway charts it has no defaults for. A chart a
security team has reviewed is listed in `reviewedCharts` (chart name, optionally repo and
version, and the reason); for it those cannot-judge findings are waived, while an exposure
its known values spell out (a public LoadBalancer, host networking, an open ingress) is
still a finding.

A v4 Chart (and v3 Chart) is a component the provider expands: when its rendered objects
are registered (a real preview), each is judged as a Kubernetes object by the other
rules, which see the chart's defaults too, so the values are not judged a second time.
"""
from __future__ import annotations

import re
from typing import Any, Iterator, Optional

import yaml

from ._framework import FAMILY_EXPOSURE, Finding, Stack, StackResource, stack_policy, unknown, violation
from ._wire import as_bool, as_dict, as_list, as_number, is_unknown
from .exposure_kubernetes import (INGRESS_CLASSES_SCHEMA, judge_ingress, judge_pod, judge_service)
from .k8s_walk import MAX_NODES, find_shapes

RELEASE = "kubernetes:helm.sh/v3:Release"
CHART_COMPONENTS = ("kubernetes:helm.sh/v4:Chart", "kubernetes:helm.sh/v3:Chart", "kubernetes:helm.sh/v2:Chart")
HELM_TYPES = (RELEASE,) + CHART_COMPONENTS
_ASSET_SIG = "c44067f5952c0a294b673a41bacd8c17"

REVIEWED_CHARTS_SCHEMA = {
    "type": "array",
    "default": [],
    "items": {
        "type": "object",
        "required": ["chart", "reason"],
        "properties": {
            "chart": {"type": "string", "minLength": 1},
            "repo": {"type": "string"},
            "version": {"type": "string"},
            "reason": {"type": "string", "minLength": 1},
        },
    },
    "description": ("Charts whose values and defaults a security team has reviewed: {chart, repo?, "
                    "version?, reason}. For them, values the pack cannot judge (unknown during "
                    "preview, chart-specific keys, unread value files, exposing chart defaults) "
                    "are waived; exposures the values spell out are still findings."),
}

# Charts whose defaults create an internet-facing entry point: (value path of the Service
# type, its default, path of the annotations beside it, paths of switches any of which
# turns the Service off, "|"-separated; "+path" for a Service that is off unless switched on). Sources, each chart's values.yaml:
# - ingress-nginx: https://github.com/kubernetes/ingress-nginx/blob/main/charts/ingress-nginx/values.yaml
# - nginx-ingress (NGINX Inc.): https://github.com/nginx/kubernetes-ingress/blob/main/charts/nginx-ingress/values.yaml
# - traefik: https://github.com/traefik/traefik-helm-chart/blob/master/traefik/values.yaml
# - kong: https://github.com/Kong/charts/blob/main/charts/kong/values.yaml (proxy.type)
# - istio gateway: https://github.com/istio/istio/blob/master/manifests/charts/gateway/values.yaml
# - bitnami nginx / wordpress / contour: https://github.com/bitnami/charts (service.type,
#   envoy.service.type)
# - emissary-ingress: https://github.com/emissary-ingress/emissary/blob/master/charts/emissary-ingress/values.yaml
EXPOSING_DEFAULTS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "ingress-nginx": (("controller.service.type", "LoadBalancer", "controller.service.annotations",
                       "controller.service.enabled|controller.service.external.enabled"),
                      # The optional second Service is internal only through its annotations.
                      ("controller.service.internal.type", "LoadBalancer",
                       "controller.service.internal.annotations", "+controller.service.internal.enabled")),
    "nginx-ingress": (("controller.service.type", "LoadBalancer", "controller.service.annotations",
                       "controller.service.create"),),
    "traefik": (("service.type", "LoadBalancer", "service.annotations", "service.enabled"),),
    "kong": (("proxy.type", "LoadBalancer", "proxy.annotations", "proxy.enabled"),),
    "gateway": (("service.type", "LoadBalancer", "service.annotations", ""),),
    "nginx": (("service.type", "LoadBalancer", "service.annotations", ""),),
    "wordpress": (("service.type", "LoadBalancer", "service.annotations", ""),),
    "contour": (("envoy.service.type", "LoadBalancer", "envoy.service.annotations", ""),),
    "emissary-ingress": (("service.type", "LoadBalancer", "service.annotations", ""),),
}
# Charts that are entry points by purpose: without known defaults they cannot be judged.
_ENTRY_POINT_CHART = re.compile(r"ingress|gateway|proxy|traefik|envoy|haproxy|kong|istio|contour|"
                                r"ambassador|emissary|apisix|caddy|skipper")
# Keys whose meaning is chart-specific but whose purpose is exposure.
_CHART_SPECIFIC = re.compile(r"^(external[-_]?access|expose|exposed|exposure|public[-_]?access|"
                             r"external[-_]?service|public[-_]?service|route|routes|http[-_]?route|"
                             r"virtual[-_]?service|load[-_]?balancer|external[-_]?dns)$", re.IGNORECASE)


def chart_identity(props: dict) -> tuple[Any, Any, Any]:
    """(chart name, repository, version) as a reviewer names them."""
    chart = props.get("chart")
    repo = as_dict(props.get("repositoryOpts")).get("repo") if not is_unknown(props.get("repositoryOpts")) else None
    version = props.get("version")
    if is_unknown(chart):
        return chart, repo, version
    if not isinstance(chart, str):
        return None, repo, version  # not a chart reference Helm accepts: no name to match
    name = chart.rstrip("/")
    if "://" in name and not repo and not name.startswith("oci://"):
        repo = name
    name = name.rsplit("/", 1)[-1]
    if name.endswith(".tgz"):
        name = re.sub(r"-v?\d+\.\d+\.\d+[^/]*$", "", name[:-4])
    return name, repo, version


def reviewed_entry(config: dict, name: Any, repo: Any, version: Any) -> Optional[dict]:
    for entry in config.get("reviewedCharts") or []:
        if not isinstance(entry, dict) or entry.get("chart") != name:
            continue
        if entry.get("repo") and (not isinstance(repo, str) or entry["repo"].rstrip("/") != repo.rstrip("/")):
            continue
        if entry.get("version") and (not isinstance(version, str) or entry["version"] != version):
            continue
        return entry
    return None


def _merged_values(props: dict) -> tuple[Any, list[Finding]]:
    """valueYamlFiles in order, then `values` on top (what Helm merges), and what could not
    be read. Unknown files or values come back as the unknown sentinel."""
    problems: list[Finding] = []
    merged: Any = {}
    files = props.get("valueYamlFiles")
    fix = "pass values inline (values=...), or list the reviewed chart in reviewedCharts"
    if is_unknown(files):
        problems.append(unknown("valueYamlFiles", fix))
    for index, asset in enumerate(as_list(files)):
        path = f"valueYamlFiles[{index}]"
        text = _asset_text(asset)
        if is_unknown(asset) or is_unknown(text):
            problems.append(unknown(path, fix))
            continue
        if not isinstance(text, str):
            problems.append(violation(path, None, "it is a file or URL the pack does not read, so the "
                                      "values it sets cannot be judged", fix, rendered="not readable"))
            continue
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError:
            problems.append(violation(path, None, "it is not YAML the pack can read", fix, rendered="unreadable"))
            continue
        merged = _merge(merged, document if isinstance(document, dict) else {})
    values = props.get("values")
    if is_unknown(values):
        return values, problems
    return _merge(merged, as_dict(values)), problems


def _asset_text(asset: Any) -> Any:
    """The text of a StringAsset, as the policy SDK hands it over (an asset object) or as the
    wire has it (a mapping with `text`); None for file and remote assets."""
    text = getattr(asset, "text", None)
    if text is None and isinstance(asset, dict):
        text = asset.get("text")
    return text


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        result = dict(base)
        for key, value in override.items():
            result[key] = _merge(base.get(key), value) if key in base else value
        return result
    return override


def _at(tree: Any, dotted: str) -> tuple[bool, Any]:
    node = tree
    for part in dotted.split("."):
        if is_unknown(node):
            return True, node
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _walk_keys(values: Any) -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) for every mapping entry, bounded; unknown values included."""
    pending = [("values", values)]
    seen = 0
    while pending:
        path, node = pending.pop()
        seen += 1
        if seen > MAX_NODES:
            yield path, "", "too-large"
            return
        if isinstance(node, dict):
            for key, child in node.items():
                child_path = f"{path}.{key}"
                yield child_path, str(key), child
                if isinstance(child, (dict, list)):
                    pending.append((child_path, child))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                if isinstance(child, (dict, list)):
                    pending.append((f"{path}[{index}]", child))
                elif is_unknown(child):
                    yield f"{path}[{index}]", "", child


def _disabled(value: Any) -> bool:
    if value in (None, False, "", 0, [], {}):
        return True
    if isinstance(value, dict):
        enabled = value.get("enabled", value.get("enable"))
        return enabled is not None and not is_unknown(enabled) and as_bool(enabled) is False
    return isinstance(value, str) and as_bool(value) is False


def judge_values(values: Any, name: Any, reviewed: bool, config: dict) -> Iterator[Finding]:
    waive = reviewed
    fix = ("make the values explicit and internal (Service type ClusterIP or an internal scheme "
           "annotation, no host networking, ingress internal or authenticated), or list the reviewed "
           "chart in reviewedCharts")
    if is_unknown(values):
        if not waive:
            yield unknown("values", fix)
        return
    # What the values spell out: always judged.
    shapes = find_shapes(values, "values", values_mode=True)
    spelled = [finding for shape in shapes.services
               for finding in judge_service(shape.path, shape.spec, shape.annotations, shape.annotations_path)]
    spelled += [finding for shape in shapes.pods for finding in judge_pod(shape)]
    # A reviewed chart's unknown values are waived; what the known values spell out is not.
    yield from (f for f in spelled if not (waive and f.unknown))
    for path, key, value in _walk_keys(values):
        if value == "too-large" and key == "":
            yield violation(path, None, "the values are larger than the policy's walk budget", fix,
                            rendered="too large")
            return
        lowered = key.lower()
        if is_unknown(value):
            if not waive:
                yield unknown(path, fix, why="what a chart does with a value is chart-specific, so a value "
                              "unknown at preview cannot be judged and the guardrail fails closed")
            continue
        if lowered == "hostnetwork" and as_bool(value) is True and not isinstance(value, dict):
            yield violation(path, value, "the chart's pods listen on the node's own addresses, outside "
                            "NetworkPolicy", fix)
        elif lowered == "hostport" and _host_port_on(value):
            yield violation(path, value, "the chart publishes a container port on every node's address, "
                            "bypassing Services and NetworkPolicy", fix)
        elif lowered.endswith("ingress") and isinstance(value, dict) and "networkpolic" not in path.lower():
            yield from _judge_ingress_values(path, value, config, waive)
        elif _CHART_SPECIFIC.match(key) and not _disabled(value) and not waive:
            yield violation(path, None, "its meaning is chart-specific and its purpose is exposure, so "
                            "what it publishes cannot be judged", fix, rendered="set")


def _host_port_on(value: Any) -> bool:
    if isinstance(value, dict):
        enabled = value.get("enabled")
        if enabled is not None:
            return as_bool(enabled) is True
        return any(_host_port_on(v) for v in value.values())
    number = as_number(value)
    return isinstance(number, float) and number > 0


def _judge_ingress_values(path: str, ingress: dict, config: dict, waive: bool) -> Iterator[Finding]:
    enabled = ingress.get("enabled")
    if is_unknown(enabled):
        if not waive:
            yield unknown(f"{path}.enabled", "set ingress.enabled to a literal")
        return
    if enabled is None or as_bool(enabled) is not True:
        return
    annotations = ingress.get("annotations")
    cls = next((ingress[k] for k in ("ingressClassName", "className", "class", "ingressClass")
                if ingress.get(k) is not None), None)
    spec = {"ingressClassName": cls} if cls is not None else {}
    yield from judge_ingress(annotations if annotations is not None else {}, spec, config,
                             ann_path=f"{path}.annotations", spec_path=path)


def judge_defaults(values: Any, name: Any) -> Iterator[Finding]:
    """Charts that expose by default: the default applies where the values are silent."""
    for type_path, default, annotations_path, switch in EXPOSING_DEFAULTS.get(name, ()):
        switches = [path for path in switch.split("|") if path]
        if any(present and not is_unknown(enabled) and as_bool(enabled) is False
               for present, enabled in (_at(values, path) for path in switches if not path.startswith("+"))):
            continue  # the chart creates no such Service
        opt_in = [_at(values, path[1:]) for path in switches if path.startswith("+")]
        if any(not present or (not is_unknown(enabled) and as_bool(enabled) is not True)
               for present, enabled in opt_in):
            continue  # off unless switched on
        present, explicit = _at(values, type_path)
        _, annotations = _at(values, annotations_path)
        if present:
            # As the values spell it, where the chart keeps it (kong's proxy.type has no
            # `service` in its path for the generic walk to recognise).
            parent, _, key = type_path.rpartition(".")
            yield from judge_service(f"values.{parent}", {"type": explicit}, annotations,
                                     f"values.{annotations_path}", type_key=key)
            continue
        for finding in judge_service("", {"type": default}, annotations, f"values.{annotations_path}"):
            yield Finding(f"values.{type_path}", f"not set (chart default {default})",
                          f"the {name} chart defaults it to {default}; " + finding.why,
                          f"set values.{type_path}: ClusterIP, or annotate values.{annotations_path} "
                          f"with the internal scheme", unknown=finding.unknown)


def release_findings(res: StackResource, config: dict) -> Iterator[Finding]:
    name, repo, version = chart_identity(res.props)
    if is_unknown(name):
        yield unknown("chart", "name the chart with a literal")
        return
    entry = reviewed_entry(config, name, repo, version)
    reviewed = entry is not None
    values, problems = _merged_values(res.props)
    if not reviewed:
        yield from problems
        for key in ("postrender", "postRenderer"):
            if res.props.get(key):
                yield violation(key, None, "a post-renderer can rewrite every rendered object, so the "
                                "values do not tell what is deployed", "drop the post-renderer, or list "
                                "the reviewed chart in reviewedCharts", rendered="set")
    yield from judge_values(values, name, reviewed, config)
    if reviewed or is_unknown(values):
        return
    yield from judge_defaults(values, name)
    yield from _entry_point_chart(name)


def _entry_point_chart(name: Any) -> Iterator[Finding]:
    if name not in EXPOSING_DEFAULTS and isinstance(name, str) and _ENTRY_POINT_CHART.search(name.lower()):
        yield violation("chart", name, "it is an ingress, gateway or proxy chart whose defaults the pack "
                        "does not know, so what it publishes cannot be judged from the values",
                        "list the reviewed chart (with its version) in reviewedCharts once its values "
                        "keep it internal")


def _check(stack: Stack, config: dict) -> Iterator[tuple[str, Finding]]:
    parents = {r.parent for r in stack.resources if r.parent}
    for res in stack.of_type(*HELM_TYPES):
        if res.type in CHART_COMPONENTS and res.urn in parents:
            continue  # rendered: its objects are judged one by one
        if res.type != RELEASE and "chart" not in res.props:
            name = "chart"
            yield res.urn, violation(name, None, "the chart component renders inside the program and none "
                                     "of its objects were registered, so nothing it deploys can be judged",
                                     "use kubernetes.helm.v4.Chart or helm.v3.Release with inline values",
                                     rendered="not visible to the policy")
            continue
        seen: set = set()
        for finding in release_findings(res, config):
            if finding.path not in seen:  # a value can match two shapes (pod spec and key)
                seen.add(finding.path)
                yield res.urn, finding


HELM_CHART_VALUES = stack_policy(
    name="helm-chart-values",
    family=FAMILY_EXPOSURE,
    description="Helm releases and charts deploy nothing exposed: values are judged for Service types "
                "and load balancer schemes, host networking and ports, and enabled ingresses; charts "
                "that expose by default must be made internal in values; values the pack cannot judge "
                "(unknown, unread files, chart-specific exposure keys, unknown ingress/gateway charts, "
                "post-renderers) fail closed unless the chart is in reviewedCharts.",
    resource_types=HELM_TYPES,
    check=_check,
    config_schema={"reviewedCharts": REVIEWED_CHARTS_SCHEMA,
                   "internalIngressClasses": {**INGRESS_CLASSES_SCHEMA,
                                              "description": "Keep equal to k8s-ingress-internal.internalIngressClasses."}},
    remediation="Set exposure-relevant values explicitly and internally, or have the chart reviewed and "
                "listed in reviewedCharts.",
)

POLICIES = [HELM_CHART_VALUES]

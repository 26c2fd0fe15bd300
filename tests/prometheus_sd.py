"""Which pods, on which port, a Prometheus `kubernetes_sd_configs` pod-role job scrapes.

An emulation of the parts this project's scrape jobs use, after the Prometheus docs
(configuration.md, `<kubernetes_sd_config>` role pod and `<relabel_config>`): one target per
declared container port (`__address__` = pod IP:port, `__meta_kubernetes_pod_container_port_number`),
pod labels and annotations as `__meta_kubernetes_pod_label_<name>` /
`__meta_kubernetes_pod_annotation_<name>` (name characters outside [a-zA-Z0-9_] become `_`),
`namespaces.names`, label `selectors`, and the keep/drop/replace relabel actions with anchored
regular expressions. Any other action fails loudly instead of guessing.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Iterator, Mapping, Optional

from tests.netpol import Pod


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _label_selector_matches(selector: Optional[str], labels: Mapping[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value.lstrip("="):
                return False
        elif labels.get(term) is None:
            return False
    return True


def _expand(replacement: str, match: re.Match) -> str:
    return re.sub(r"\$\{?(\d+)\}?", lambda m: match.group(int(m.group(1))) or "", replacement)


def relabel(labels: Mapping[str, str], configs: Iterable[Mapping[str, Any]]) -> Optional[dict[str, str]]:
    """The target's labels after `configs`, or None when a rule drops it."""
    result = dict(labels)
    for config in configs:
        action = config.get("action", "replace")
        value = config.get("separator", ";").join(result.get(name, "") for name in config.get("source_labels", []))
        match = re.fullmatch(config.get("regex", "(.*)"), value)
        if action == "keep":
            if match is None:
                return None
        elif action == "drop":
            if match is not None:
                return None
        elif action == "replace":
            if match is not None:
                expanded = _expand(config.get("replacement", "$1"), match)
                if expanded:
                    result[config["target_label"]] = expanded
                else:
                    result.pop(config["target_label"], None)
        else:
            raise AssertionError(f"relabel action {action!r} is not emulated; extend tests/prometheus_sd.py")
    return result


def _pod_targets(pod: Pod) -> Iterator[dict[str, str]]:
    meta = {"__meta_kubernetes_namespace": pod.namespace, "__meta_kubernetes_pod_name": pod.name,
            "__meta_kubernetes_pod_ip": pod.ip}
    meta.update({f"__meta_kubernetes_pod_label_{_sanitize(k)}": v for k, v in pod.labels.items()})
    meta.update({f"__meta_kubernetes_pod_annotation_{_sanitize(k)}": v for k, v in pod.annotations.items()})
    if not pod.ports:
        yield {**meta, "__address__": pod.ip}
    for port, name in pod.ports.items():
        yield {**meta, "__address__": f"{pod.ip}:{port}", "__meta_kubernetes_pod_container_port_number": str(port),
               "__meta_kubernetes_pod_container_port_name": name}


def scrape_targets(job: Mapping[str, Any], pods: Iterable[Pod]) -> list[tuple[Pod, int]]:
    """(pod, port) for every target the job keeps."""
    found = []
    for sd in job.get("kubernetes_sd_configs", []):
        if sd["role"] != "pod":
            raise AssertionError(f"job {job['job_name']}: role {sd['role']!r} is not emulated")
        names = (sd.get("namespaces") or {}).get("names")
        selectors = [s for s in sd.get("selectors", []) if s.get("role") == "pod"]
        for pod in pods:
            if names and pod.namespace not in names:
                continue
            if not all(_label_selector_matches(s.get("label"), pod.labels) for s in selectors):
                continue
            for target in _pod_targets(pod):
                kept = relabel(target, job.get("relabel_configs", []))
                if kept is None:
                    continue
                host, _, port = kept["__address__"].rpartition(":")
                if not host or not port.isdigit():
                    raise AssertionError(f"job {job['job_name']}: target {kept['__address__']} has no port")
                found.append((pod, int(port)))
    return found

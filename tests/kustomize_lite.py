"""`kustomize build` for the tests, in ~100 lines: the kustomization fields k8s/ uses.

Implements resources (files and directories), namespace, labels (pairs, includeSelectors,
includeTemplates), replicas, images and patches (strategic merge, by kind and name, with
Kubernetes' list merge keys and `null` deleting a field). A kustomization using any other
field is refused, so nothing is silently ignored. Checked against kustomize v5.7.1's
output for k8s/base and k8s/overlays/small when written.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "replicas", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding",
                  "CustomResourceDefinition", "PriorityClass"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# strategic merge: lists merged item by item on this key (the rest are replaced)
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "volumeMounts": "mountPath",
              "env": "name", "ports": "containerPort"}

Doc = dict[str, Any]


class KustomizeError(Exception):
    pass


def load_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def key(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def merge(base: Any, patch: Any, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = merge(base[k], v, k) if k in base else v
        return out
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        mk = MERGE_KEYS[field] if all(MERGE_KEYS[field] in i for i in base + patch) else "port"
        out = list(base)
        for item in patch:
            at = [i for i, b in enumerate(out) if b.get(mk) == item.get(mk)]
            if at:
                out[at[0]] = merge(out[at[0]], item)
            else:
                out.append(item)
        return out
    return patch


def pod_templates(doc: Doc) -> list[Doc]:
    if doc["kind"] in WORKLOADS:
        return [doc["spec"]["template"]]
    if doc["kind"] == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]]
    return []


def set_image(container: Doc, images: list[Doc]) -> None:
    ref = container["image"]
    name, digest = ref.split("@", 1) if "@" in ref else (ref, None)
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    for img in images:
        if img["name"] == name:
            name, tag = img.get("newName", name), img.get("newTag", tag)
            digest = img.get("digest", digest)
            if "digest" in img:
                tag = None
    container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def build(directory: Path) -> list[Doc]:
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    if unknown := set(kust) - SUPPORTED:
        raise KustomizeError(f"{directory}: kustomize_lite does not implement {sorted(unknown)}")
    docs: list[Doc] = []
    for res in kust.get("resources", []):
        path = directory / res
        docs += build(path) if path.is_dir() else [copy.deepcopy(d) for d in load_docs(path)]
    if len({key(d) for d in docs}) != len(docs):
        raise KustomizeError(f"{directory}: a resource id appears twice")
    by_key = {key(d): d for d in docs}
    for patch in kust.get("patches", []):
        if set(patch) != {"path"}:
            raise KustomizeError(f"{directory}: only `patches: - path: FILE` (strategic merge) "
                                 "is implemented")
        for p in load_docs(directory / patch["path"]):
            if key(p) not in by_key:
                raise KustomizeError(f"{directory}: patch target {key(p)} not found")
            target = by_key[key(p)]
            merged = merge(copy.deepcopy(target), p)
            target.clear()
            target.update(merged)
    if ns := kust.get("namespace"):
        for d in docs:
            if d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = ns
    for label in kust.get("labels", []):
        if label.get("includeSelectors"):
            raise KustomizeError(f"{directory}: labels with includeSelectors are not implemented")
        for d in docs:
            d["metadata"].setdefault("labels", {}).update(label["pairs"])
            if label.get("includeTemplates"):
                for t in pod_templates(d):
                    t.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for rep in kust.get("replicas", []):
        hits = [d for d in docs if d["metadata"]["name"] == rep["name"] and d["kind"] in WORKLOADS]
        if not hits:
            raise KustomizeError(f"{directory}: replicas: no workload named {rep['name']}")
        for d in hits:
            d["spec"]["replicas"] = rep["count"]
    if images := kust.get("images"):
        for d in docs:
            for t in pod_templates(d):
                for c in t["spec"].get("containers", []) + t["spec"].get("initContainers", []):
                    set_image(c, images)
    return docs


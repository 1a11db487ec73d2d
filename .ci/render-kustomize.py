#!/usr/bin/env python3
"""Renders a kustomization of deploy/ without kustomize, for .ci/check-delivery.

    render-kustomize.py DIR            print the rendered documents of DIR on stdout
    render-kustomize.py --same A B     exit 1 unless two renderings hold the same objects

Only the features deploy/ uses are supported, and anything else is refused rather than
rendered differently from `kubectl kustomize`:
  - `resources`: YAML files and directories holding a kustomization.yaml;
  - `namespace`: set on every object (all of them must be namespaced kinds);
  - `images`: `name` with `newName`, `newTag` and/or `digest`, applied to the containers and
    init containers of Deployments, Jobs and the other pod-owning kinds;
  - `patches`: strategic merge patches, inline (`patch`) or in a file (`path`), each naming
    its target by apiVersion, kind and metadata.name (no `target` selectors, no `$patch`);
    lists merge by key for containers, initContainers, env, volumes (name), volumeMounts
    (mountPath) and ports (containerPort), as Kubernetes declares; other lists are refused.
When kubectl is installed, check-delivery compares this rendering with `kubectl kustomize`'s
(--same), so the two cannot drift apart.
"""

import copy
import pathlib
import sys

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
# kinds whose namespace also appears inside them (subjects), which this renderer does not rewrite
REFUSED_KINDS = {"RoleBinding", "ClusterRoleBinding"}
# patchMergeKey of the lists a patch may touch
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}


class RenderError(Exception):
    pass


def load_documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kustomization_file(directory):
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise RenderError(f"{directory}: no kustomization.yaml")


def key_of(obj):
    meta = obj.get("metadata") or {}
    return (obj.get("apiVersion"), obj.get("kind"), meta.get("namespace"), meta.get("name"))


def render(directory):
    directory = pathlib.Path(directory)
    path = kustomization_file(directory)
    k = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(k) - SUPPORTED_KEYS
    if unknown:
        raise RenderError(f"{path}: unsupported kustomization keys: {', '.join(sorted(unknown))}")
    objects = []
    for entry in k.get("resources") or []:
        target = directory / entry
        if target.is_dir():
            objects.extend(render(target))
        elif target.is_file():
            objects.extend(load_documents(target))
        else:
            raise RenderError(f"{path}: resource {entry} not found")
    for patch in k.get("patches") or []:
        apply_patch(objects, patch, directory, path)
    for image in k.get("images") or []:
        set_image(objects, image, path)
    if "namespace" in k:
        for obj in objects:
            if obj.get("kind") in CLUSTER_SCOPED:
                raise RenderError(f"{path}: {obj['kind']} is cluster-scoped")
            obj.setdefault("metadata", {})["namespace"] = k["namespace"]
    for obj in objects:
        if obj.get("kind") in REFUSED_KINDS:
            raise RenderError(f"{path}: {obj['kind']} is not supported by this renderer")
    seen = set()
    for obj in objects:
        key = key_of(obj)
        if key in seen:
            raise RenderError(f"{path}: {key} is defined twice")
        seen.add(key)
    return objects


def apply_patch(objects, patch, directory, path):
    extra = set(patch) - {"patch", "path"}
    if extra or len(patch) != 1:
        raise RenderError(f"{path}: a patch must have exactly one of patch/path, and no {extra}")
    if "path" in patch:
        docs = load_documents(directory / patch["path"])
    else:
        docs = [d for d in yaml.safe_load_all(patch["patch"]) if d is not None]
    for doc in docs:
        name = (doc.get("metadata") or {}).get("name")
        matches = [
            o
            for o in objects
            if o.get("apiVersion") == doc.get("apiVersion")
            and o.get("kind") == doc.get("kind")
            and (o.get("metadata") or {}).get("name") == name
        ]
        if len(matches) != 1:
            raise RenderError(f"{path}: a patch of {doc.get('kind')} {name} matches {len(matches)} objects")
        merged = merge(matches[0], doc, f"{doc.get('kind')} {name}")
        matches[0].clear()
        matches[0].update(merged)


def merge(base, patch, where):
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(key, str) and key.startswith("$"):
            raise RenderError(f"{where}: patch directive {key} is not supported")
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list):
            if key not in MERGE_KEYS:
                raise RenderError(f"{where}: the patch sets the list `{key}`, whose merge is not supported")
            out[key] = merge_list(out.get(key) or [], value, MERGE_KEYS[key], f"{where}/{key}")
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, f"{where}/{key}")
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_list(base, patch, merge_key, where):
    out = copy.deepcopy(base)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise RenderError(f"{where}: every item needs its merge key `{merge_key}`")
        for i, existing in enumerate(out):
            if existing.get(merge_key) == item[merge_key]:
                out[i] = merge(existing, item, f"{where}[{item[merge_key]}]")
                break
        else:
            # strategic merge puts items the base lacks first
            out.insert(0, copy.deepcopy(item))
    return out


def pod_specs(obj):
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind == "Pod":
        yield spec
    elif kind == "CronJob":
        yield ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    elif kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        yield (spec.get("template") or {}).get("spec") or {}


def split_image(image):
    """(name, tag, digest) of an image reference."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    tag = None
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        image, tag = image[:colon], image[colon + 1 :]
    return image, tag, digest


def set_image(objects, rule, path):
    extra = set(rule) - {"name", "newName", "newTag", "digest"}
    if extra:
        raise RenderError(f"{path}: unsupported images keys: {', '.join(sorted(extra))}")
    for obj in objects:
        for spec in pod_specs(obj):
            for field in ("containers", "initContainers"):
                for container in spec.get(field) or []:
                    name, tag, digest = split_image(container.get("image", ""))
                    if name != rule["name"]:
                        continue
                    name = rule.get("newName", name)
                    if "digest" in rule:
                        container["image"] = f"{name}@{rule['digest']}"
                    elif "newTag" in rule:
                        container["image"] = f"{name}:{rule['newTag']}"
                    else:
                        ref = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
                        container["image"] = ref


def same(a, b):
    left = {key_of(o): o for o in load_documents(a)}
    right = {key_of(o): o for o in load_documents(b)}
    ok = True
    for key in sorted(set(left) | set(right), key=str):
        if key not in left or key not in right:
            print(f"only in {a if key in left else b}: {key}", file=sys.stderr)
            ok = False
        elif left[key] != right[key]:
            print(f"differs: {key}", file=sys.stderr)
            ok = False
    return ok


def main(argv):
    if len(argv) == 3 and argv[0] == "--same":
        return 0 if same(argv[1], argv[2]) else 1
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        objects = render(argv[0])
    except RenderError as e:
        print(f"render-kustomize: {e}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(objects, sys.stdout, sort_keys=False, default_flow_style=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

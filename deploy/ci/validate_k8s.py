#!/usr/bin/env python3
"""Validates rendered Kubernetes manifests (the output of `kubectl kustomize`).

Every built-in object is checked with kubernetes-validate, strictly (unknown fields are
errors), against the Kubernetes version given; a kind it has no schema for is an error, except
the Prometheus Operator's ServiceMonitor and PrometheusRule, which are written to
--crd-out as JSON for validate-crds.mjs (their CRD schemas). Then what issue #16 asks of the
manifests is checked on the objects themselves, and the PrometheusRule's groups are compared
with deploy/prometheus/*.rules.yml, the files promtool tests.

    validate_k8s.py --kubernetes-version 1.37.0 --crd-out crds.json rendered.yaml...
"""

import argparse
import json
import pathlib
import sys
import tomllib

import yaml
from kubernetes_validate import utils as kv

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD_GROUP = "monitoring.coreos.com/"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def fail(errors: list[str], where: str, what: str) -> None:
    errors.append(f"{where}: {what}")


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict], kind: str, errors: list[str], where: str) -> dict:
    found = by_kind(docs, kind)
    if len(found) != 1:
        fail(errors, where, f"expected one {kind}, found {len(found)}")
        return {}
    return found[0]


def check_shape(docs: list[dict], where: str, errors: list[str]) -> None:
    """The issue's list, on the rendered objects."""
    sts = one(docs, "StatefulSet", errors, where)
    cm = one(docs, "ConfigMap", errors, where)
    for kind in ["Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"]:
        if not by_kind(docs, kind):
            fail(errors, where, f"no {kind}")
    if not sts or not cm:
        return
    config = tomllib.loads(cm["data"]["gateway.toml"])
    pod = sts["spec"]["template"]["spec"]
    (gw,) = [c for c in pod["containers"] if c["name"] == "gateway"]
    ports = {p["name"]: p["containerPort"] for p in gw["ports"]}
    if gw.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        fail(errors, where, "readiness probe is not GET /readyz")
    if gw.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        fail(errors, where, "liveness probe is not GET /healthz")
    drain = config.get("drain_timeout_secs", 30)
    pre_stop = gw.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    # preStop pause + drain + the settlements' final flush (5 s, src/server.rs).
    if grace <= pre_stop + drain + 5:
        fail(errors, where, f"terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + drain {drain} + 5")
    sec = gw.get("securityContext", {})
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        fail(errors, where, "pod does not set runAsNonRoot")
    if not sec.get("readOnlyRootFilesystem"):
        fail(errors, where, "root filesystem is writable")
    if sec.get("allowPrivilegeEscalation") is not False:
        fail(errors, where, "privilege escalation allowed")
    res = gw.get("resources", {})
    for part in ["requests", "limits"]:
        for r in ["cpu", "memory"]:
            if r not in res.get(part, {}):
                fail(errors, where, f"no {part}.{r}")
    claims = [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])]
    journal = config.get("metering", {}).get("journal_path", "")
    mounts = {m["mountPath"]: m["name"] for m in gw.get("volumeMounts", [])}
    if not any(journal.startswith(path + "/") and name in claims for path, name in mounts.items()):
        fail(errors, where, f"journal {journal!r} is not on a per-replica volume claim")
    secret_env = {
        e["name"]
        for e in gw.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    for var in ["CHUTES_API_KEY", "GATEWAY_JWT_SECRET", "GATEWAY_WEBHOOK_SECRET"]:
        if var not in secret_env:
            fail(errors, where, f"{var} is not read from a Secret")
    metrics = config.get("server", {}).get("metrics_listen", "")
    if not metrics.endswith(f":{ports.get('metrics')}"):
        fail(errors, where, f"server.metrics_listen {metrics!r} is not the `metrics` port {ports.get('metrics')}")
    # The metrics port: reachable only from Prometheus.
    for np in by_kind(docs, "NetworkPolicy"):
        for rule in np["spec"].get("ingress", []):
            names = {p.get("port") for p in rule.get("ports", [])}
            if ("metrics" in names or ports.get("metrics") in names) and not rule.get("from"):
                fail(errors, where, "the metrics port is open to every peer")
            if not rule.get("ports"):
                fail(errors, where, "an ingress rule opens every port")
    # HPA and PDB aim at the StatefulSet.
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) != ("StatefulSet", sts["metadata"]["name"]):
            fail(errors, where, f"HPA scales {ref['kind']}/{ref['name']}")


def rule_groups() -> list[dict]:
    groups = []
    for path in sorted((ROOT / "deploy" / "prometheus").glob("*.rules.yml")):
        groups.extend(yaml.safe_load(path.read_text(encoding="utf-8"))["groups"])
    return groups


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubernetes-version", required=True)
    ap.add_argument("--crd-out", required=True, type=pathlib.Path)
    ap.add_argument("files", nargs="+", type=pathlib.Path)
    args = ap.parse_args()
    errors: list[str] = []
    custom = []
    checked = 0
    for path in args.files:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
        for d in docs:
            name = f"{path.name}: {d.get('kind')}/{d.get('metadata', {}).get('name')}"
            if d.get("apiVersion", "").startswith(CRD_GROUP) and d.get("kind") in CRD_KINDS:
                custom.append({"where": name, "object": d})
                continue
            try:
                kv.validate(d, args.kubernetes_version, strict=True)
                checked += 1
            except kv.ValidationError as e:
                at = ".".join(str(p) for p in e.path)
                fail(errors, name, f"{at}: {e.message}")
            except (kv.SchemaNotFoundError, kv.InvalidSchemaError) as e:
                fail(errors, name, f"no schema: {e.message}")
        check_shape(docs, path.name, errors)
        rules = by_kind(docs, "PrometheusRule")
        if len(rules) != 1 or rules[0]["spec"]["groups"] != rule_groups():
            fail(errors, path.name, "the PrometheusRule's groups differ from deploy/prometheus/*.rules.yml")
        for kind in CRD_KINDS:
            if not by_kind(docs, kind):
                fail(errors, path.name, f"no {kind}")
    args.crd_out.write_text(json.dumps(custom), encoding="utf-8")
    for e in errors:
        print(f"ERROR {e}", file=sys.stderr)
    if errors:
        return 1
    print(
        f"kubernetes-validate (strict, Kubernetes {args.kubernetes_version}): {checked} objects "
        f"valid; {len(custom)} custom resources left to their CRD schemas"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

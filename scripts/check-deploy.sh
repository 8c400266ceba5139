#!/usr/bin/env bash
# The deployment checks (issue #16), run by scripts/test.sh:
# - hadolint on the Dockerfile;
# - the Kubernetes manifests: `kubectl kustomize` of the base and of the example overlay,
#   kubernetes-validate (strict) on every built-in object against KUBERNETES_VERSION, the
#   ServiceMonitor and PrometheusRule against the Prometheus Operator's CRD schemas, and the
#   shape issue #16 asks for (probes, grace period, non-root, read-only root, resources, the
#   journal on a per-replica volume, secrets from a Secret, the metrics port for Prometheus
#   only);
# - the generated PrometheusRule: identical to what deploy/k8s/gen-prometheusrule.py makes of
#   deploy/prometheus/*.rules.yml (the files promtool tests);
# - deploy/compose.yaml against the Compose specification's JSON schema.
#
# The tools come from the package registries, pinned: Python packages (deploy/ci/
# requirements.txt) into a virtualenv under target/deploy-check/, the CRD schemas from npm
# (deploy/ci/crds/package-lock.json) beside it; kubectl comes with the machine image. A tool
# that cannot be had fails the run in CI (CI=true, or REQUIRE_DEPLOY_CHECKS=1); elsewhere the
# script says loudly what it did not check and goes on.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VERSION=${KUBERNETES_VERSION:-1.37.0}
WORK=target/deploy-check
mkdir -p "$WORK"
required=0
if [ "${CI:-}" = true ] || [ "${REQUIRE_DEPLOY_CHECKS:-0}" = 1 ]; then required=1; fi
skipped=()

# Tools are missing: fail in CI, else remember what was not checked.
missing() {
  if [ "$required" = 1 ]; then
    echo "check-deploy: $1 (required in CI)" >&2
    exit 1
  fi
  skipped+=("$1")
}

venv=$WORK/venv
stamp=$venv/.requirements
python_ok=0
if [ -f "$stamp" ] && cmp -s "$stamp" deploy/ci/requirements.txt; then
  python_ok=1
elif command -v python3 >/dev/null 2>&1 && python3 -m venv --clear "$venv" >/dev/null 2>&1 &&
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r deploy/ci/requirements.txt; then
  cp deploy/ci/requirements.txt "$stamp"
  python_ok=1
else
  missing "could not install the Python tools of deploy/ci/requirements.txt (hadolint, kubernetes-validate, jsonschema)"
fi

if [ "$python_ok" = 1 ]; then
  "$venv/bin/hadolint" --failure-threshold style Dockerfile
  echo "hadolint: Dockerfile clean"
  "$venv/bin/python" deploy/ci/check_compose.py deploy/compose.yaml
fi

# The PrometheusRule is the tested rule files, regenerated: no drift.
python3 deploy/k8s/gen-prometheusrule.py --check

if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize deploy/k8s/base >"$WORK/base.yaml"
  kubectl kustomize deploy/k8s/overlays/example >"$WORK/example.yaml"
  if [ "$python_ok" = 1 ]; then
    "$venv/bin/python" deploy/ci/validate_k8s.py --kubernetes-version "$KUBERNETES_VERSION" \
      --crd-out "$WORK/crds.json" "$WORK/base.yaml" "$WORK/example.yaml"
    crds=$WORK/crds
    mkdir -p "$crds"
    cp deploy/ci/crds/package.json deploy/ci/crds/package-lock.json deploy/ci/crds/validate-crds.mjs "$crds/"
    if [ -d "$crds/node_modules" ] && cmp -s "$crds/package-lock.json" "$crds/.installed"; then
      :
    elif command -v npm >/dev/null 2>&1 &&
      (cd "$crds" && npm ci --no-audit --no-fund --loglevel=error >npm.log 2>&1); then
      cp "$crds/package-lock.json" "$crds/.installed"
    else
      missing "could not install the Prometheus Operator CRD schemas from npm (deploy/ci/crds)"
      crds=""
    fi
    if [ -n "$crds" ]; then node "$crds/validate-crds.mjs" "$WORK/crds.json"; fi
  fi
else
  missing "kubectl not found: the Kustomize output was not built nor validated"
fi

if [ "${#skipped[@]}" -gt 0 ]; then
  printf '\n!!!!!! check-deploy: NOT checked:\n' >&2
  printf '!!!!!!   %s\n' "${skipped[@]}" >&2
  printf '!!!!!! CI installs these and fails instead.\n\n' >&2
else
  echo "check-deploy: every deployment check passed"
fi

#!/usr/bin/env bash
# Checks manifests/ (and manifests/cleanup/) offline, as rendered by `kubectl kustomize`: every object against the
# Kubernetes API schemas with kubernetes-validate --strict (unknown fields fail), for the oldest and the
# newest Kubernetes the manifests are meant for; every flag and environment variable given to wgmesh
# against the binary (scripts/check-manifests.py); and the admission policies' CEL against a table of
# admission requests (scripts/check-admission-policies.py). scripts/setup.sh installs the tools.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${WGMESH_BIN:-$root/.build/debug/wgmesh}
venv=$root/.venv-validate
[ -x "$bin" ] || { echo "check-manifests: $bin is missing: run swift build --product wgmesh (or set WGMESH_BIN)" >&2; exit 1; }
[ -x "$venv/bin/kubernetes-validate" ] || { echo "check-manifests: $venv is missing: run scripts/setup.sh" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# manifests/ and the uninstall's manifests/cleanup/, one document stream.
{ kubectl kustomize manifests/; echo ---; kubectl kustomize manifests/cleanup/; } >"$work/wgmesh.yaml"
kubectl=$(kubectl version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -1)
echo "rendered $(grep -c '^kind:' "$work/wgmesh.yaml") objects with kubectl $kubectl"
# 1.30: the oldest with the v1 ValidatingAdmissionPolicy and node-bound service-account tokens on by default.
for version in 1.30.0 1.37.0; do
  "$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" "$work/wgmesh.yaml"
  echo "kubernetes-validate --strict --kubernetes-version $version: every object passed"
done
"$venv/bin/python" scripts/check-manifests.py "$work/wgmesh.yaml" "$bin" Sources
echo "flag check: every flag and environment variable the manifests give wgmesh exists"
"$venv/bin/python" scripts/check-admission-policies.py "$work/wgmesh.yaml"

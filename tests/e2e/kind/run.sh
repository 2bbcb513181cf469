#!/usr/bin/env bash
# End-to-end release on a throwaway kind cluster: Temporal dev server, canaryflow from the Helm chart (image built
# from the repository's Dockerfile), podinfo with a blue/green Canary, a new image, and a promoted release.
# Needs docker, kind, kubectl and helm. See README.md next to this script.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/../../.." && pwd)"

CLUSTER_NAME="${CLUSTER_NAME:-canaryflow-e2e}"
IMAGE_REPOSITORY="${IMAGE_REPOSITORY:-canaryflow}"
IMAGE_TAG="${IMAGE_TAG:-e2e}"
PROVIDER="${PROVIDER:-kubernetes}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
SKIP_BUILD="${SKIP_BUILD:-0}"
TIMEOUT="${TIMEOUT:-5m}"
NEW_IMAGE="${NEW_IMAGE:-ghcr.io/stefanprodan/podinfo:6.7.0}"

if [[ -x "${REPO_ROOT}/.venv/bin/helm" ]]; then
  HELM="${HELM:-${REPO_ROOT}/.venv/bin/helm}"
else
  HELM="${HELM:-helm}"
fi
KUBECTL=(kubectl --context "kind-${CLUSTER_NAME}")
CANARY="canaries.canaryflow.dev/podinfo"

log() {
  printf '\n==> %s\n' "$*"
}

require() {
  local tool
  for tool in "$@"; do
    if ! command -v "${tool}" >/dev/null 2>&1; then
      echo "missing prerequisite: ${tool}" >&2
      exit 2
    fi
  done
}

diagnostics() {
  log "diagnostics"
  "${KUBECTL[@]}" -n test get "${CANARY}" -o yaml || true
  "${KUBECTL[@]}" -n test get deployments,services,hpa,pods -o wide || true
  "${KUBECTL[@]}" -n test get events --sort-by=.lastTimestamp || true
  "${KUBECTL[@]}" -n canaryflow get pods -o wide || true
  "${KUBECTL[@]}" -n canaryflow logs deployment/canaryflow-worker --tail=200 || true
  "${KUBECTL[@]}" -n canaryflow logs deployment/canaryflow-controller --tail=200 || true
}

cleanup() {
  local status=$?
  if [[ ${status} -ne 0 ]]; then
    diagnostics
  fi
  if [[ "${KEEP_CLUSTER}" == "1" ]]; then
    log "keeping cluster ${CLUSTER_NAME} (delete it with: kind delete cluster --name ${CLUSTER_NAME})"
  else
    log "deleting cluster ${CLUSTER_NAME}"
    kind delete cluster --name "${CLUSTER_NAME}" || true
  fi
  exit "${status}"
}

install_provider() {
  case "${PROVIDER}" in
    kubernetes)
      # Blue/green switches plain Services: nothing to install.
      ;;
    *)
      echo "PROVIDER=${PROVIDER} is not supported by this script yet (supported: kubernetes)" >&2
      exit 2
      ;;
  esac
}

wait_for_phase() {
  local phase=$1
  "${KUBECTL[@]}" -n test wait "${CANARY}" --for="jsonpath={.status.phase}=${phase}" --timeout="${TIMEOUT}"
}

main() {
  require docker kind kubectl "${HELM}"

  if kind get clusters 2>/dev/null | grep -qx "${CLUSTER_NAME}"; then
    log "reusing kind cluster ${CLUSTER_NAME}"
  else
    log "creating kind cluster ${CLUSTER_NAME}"
    kind create cluster --name "${CLUSTER_NAME}" --wait 120s
  fi
  trap cleanup EXIT

  if [[ "${SKIP_BUILD}" != "1" ]]; then
    log "building ${IMAGE_REPOSITORY}:${IMAGE_TAG} from ${REPO_ROOT}/Dockerfile"
    docker build --tag "${IMAGE_REPOSITORY}:${IMAGE_TAG}" --file "${REPO_ROOT}/Dockerfile" "${REPO_ROOT}"
  fi
  kind load docker-image "${IMAGE_REPOSITORY}:${IMAGE_TAG}" --name "${CLUSTER_NAME}"

  log "installing provider ${PROVIDER}"
  install_provider

  log "starting the Temporal dev server"
  "${KUBECTL[@]}" apply -f "${SCRIPT_DIR}/temporal.yaml"
  "${KUBECTL[@]}" -n temporal rollout status deployment/temporal --timeout="${TIMEOUT}"

  log "installing canaryflow from deploy/helm/canaryflow"
  "${HELM}" upgrade --install canaryflow "${REPO_ROOT}/deploy/helm/canaryflow" \
    --kube-context "kind-${CLUSTER_NAME}" \
    --namespace canaryflow --create-namespace \
    --set image.repository="${IMAGE_REPOSITORY}" \
    --set image.tag="${IMAGE_TAG}" \
    --set image.pullPolicy=Never \
    --set temporal.address=temporal.temporal:7233 \
    --set metricsServer=http://prometheus.invalid:9090 \
    --set worker.replicas=1 \
    --wait --timeout "${TIMEOUT}"

  log "deploying podinfo and its Canary"
  "${KUBECTL[@]}" create namespace test --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f -
  "${KUBECTL[@]}" apply -k "${SCRIPT_DIR}"
  "${KUBECTL[@]}" -n test rollout status deployment/podinfo --timeout="${TIMEOUT}"
  wait_for_phase Initialized
  "${KUBECTL[@]}" -n test rollout status deployment/podinfo-primary --timeout="${TIMEOUT}"

  log "releasing ${NEW_IMAGE}"
  "${KUBECTL[@]}" -n test set image deployment/podinfo "podinfod=${NEW_IMAGE}"
  wait_for_phase Progressing
  "${KUBECTL[@]}" -n test wait "${CANARY}" --for=condition=promoted --timeout="${TIMEOUT}"
  wait_for_phase Succeeded

  local primary_image
  primary_image="$("${KUBECTL[@]}" -n test get deployment/podinfo-primary \
    -o jsonpath='{.spec.template.spec.containers[0].image}')"
  if [[ "${primary_image}" != "${NEW_IMAGE}" ]]; then
    echo "podinfo-primary runs ${primary_image}, expected ${NEW_IMAGE}" >&2
    exit 1
  fi
  log "release promoted: podinfo-primary runs ${primary_image}"
}

main "$@"

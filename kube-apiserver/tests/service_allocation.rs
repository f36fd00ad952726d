//! ClusterIPs and node ports through Service type changes, as upstream's Service storage allocates them and as the
//! conformance tests in `test/e2e/network/service.go` check: ExternalName to ClusterIP and to NodePort allocate,
//! ClusterIP and NodePort to ExternalName clear and free, an update to NodePort with TCP and UDP on one port number
//! gets a node port for each, node ports are freed on delete, out-of-range and colliding node ports are refused with
//! upstream's messages. Every test also checks the allocator afterwards (a freed IP or port can be taken again; a
//! failed write leaves nothing taken, counted on tiny ranges), some through the real `/usr/bin/kubectl`.

use std::path::PathBuf;
use std::process::Output;

use api_types::patch::PatchType;
use client::Api;
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

/// `/usr/bin/kubectl` with a kubeconfig for the test apiserver's admin.
struct Kubectl {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn new(api: &TestApiserver) -> Kubectl {
        use base64::Engine;
        let b64 =
            |b: &Option<Vec<u8>>| base64::engine::general_purpose::STANDARD.encode(b.as_deref().unwrap_or_default());
        let c = &api.config;
        let dir = api.dir.path().to_path_buf();
        let kubeconfig = dir.join("admin.conf");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\ncurrent-context: test\n",
                c.server,
                b64(&c.ca_pem),
                b64(&c.client_cert_pem),
                b64(&c.client_key_pem)
            ),
        )
        .unwrap();
        Kubectl { dir, kubeconfig }
    }

    async fn run(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (dir, kubeconfig) = (self.dir.clone(), self.kubeconfig.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("/usr/bin/kubectl")
                .args(&args)
                .env("KUBECONFIG", &kubeconfig)
                .env("KUBECACHEDIR", dir.join("kcache"))
                .env("HOME", &dir)
                .output()
                .expect("run kubectl")
        })
        .await
        .unwrap()
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all).await).unwrap()
    }
}

fn services(api: &TestApiserver, ns: &str) -> Api {
    api.client.api("", "v1", "services").unwrap().namespaced(ns)
}

/// The e2e jig's TCP Service: ClusterIP, port 80 to 80.
fn tcp_service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"testid": name}},
           "spec": {"selector": {"testid": name}, "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}})
}

/// The e2e jig's ExternalName Service.
fn external_name_service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"type": "ExternalName", "externalName": "foo.example.com", "selector": {"testid": name}}})
}

fn node_port_service(name: &str, node_port: Option<i64>) -> Value {
    let mut s = tcp_service(name);
    s["spec"]["type"] = json!("NodePort");
    if let Some(p) = node_port {
        s["spec"]["ports"][0]["nodePort"] = json!(p);
    }
    s
}

/// The e2e framework's `UpdateService`: GET, change, PUT.
async fn update(api: &Api, name: &str, change: impl FnOnce(&mut Value)) -> client::Result<Value> {
    let mut s = api.get(name).await?;
    change(&mut s);
    api.replace(name, &s).await
}

fn api_error(e: client::Error) -> api_types::ApiError {
    match e {
        client::Error::Api(e) => e,
        other => panic!("not an API error: {other}"),
    }
}

fn node_port_of(svc: &Value, i: usize) -> i64 {
    svc["spec"]["ports"][i]["nodePort"].as_i64().unwrap_or(0)
}

fn cluster_ip_of(svc: &Value) -> String {
    svc["spec"]["clusterIP"].as_str().unwrap_or_default().to_string()
}

/// The IP is free: a Service can be created with it (and is deleted again).
async fn assert_ip_free(api: &Api, ip: &str) {
    let mut probe = tcp_service("ip-probe");
    probe["spec"]["clusterIP"] = json!(ip);
    let created = api.create(&probe).await.unwrap_or_else(|e| panic!("{ip} should be free: {e}"));
    assert_eq!(cluster_ip_of(&created), ip);
    api.delete("ip-probe", None).await.unwrap();
}

async fn assert_ip_taken(api: &Api, ip: &str) {
    let mut probe = tcp_service("ip-probe");
    probe["spec"]["clusterIP"] = json!(ip);
    let e = api_error(api.create(&probe).await.unwrap_err());
    assert_eq!(e.code, 422, "{e}");
    assert_eq!(
        e.message,
        format!(
            "Service \"ip-probe\" is invalid: spec.clusterIPs: Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"
        )
    );
}

/// The node port is free: a NodePort Service can be created with it (and is deleted again).
async fn assert_node_port_free(api: &Api, port: i64) {
    let created = api
        .create(&node_port_service("port-probe", Some(port)))
        .await
        .unwrap_or_else(|e| panic!("{port} should be free: {e}"));
    assert_eq!(node_port_of(&created, 0), port);
    api.delete("port-probe", None).await.unwrap();
}

async fn assert_node_port_taken(api: &Api, port: i64) {
    let e = api_error(api.create(&node_port_service("port-probe", Some(port))).await.unwrap_err());
    assert_eq!(
        e.message,
        format!(
            "Service \"port-probe\" is invalid: spec.ports[0].nodePort: Invalid value: {port}: provided port is already allocated"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_name_to_cluster_ip_and_node_port_allocates() {
    let api = TestApiserver::start().await;
    api.namespace("e2e").await;
    let svcs = services(&api, "e2e");

    // "should be able to change the type from ExternalName to ClusterIP"
    let created = svcs.create(&external_name_service("externalname-service")).await.unwrap();
    assert_eq!(created["spec"].get("clusterIP"), None, "ExternalName gets no ClusterIP");
    for f in ["clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        assert_eq!(created["spec"].get(f), None, "{f}");
    }
    let cluster_ip = update(&svcs, "externalname-service", |s| {
        s["spec"]["type"] = json!("ClusterIP");
        s["spec"]["externalName"] = json!("");
        s["spec"]["ports"] = json!([{"port": 80, "name": "http", "protocol": "TCP", "targetPort": 9376}]);
    })
    .await
    .unwrap();
    let ip = cluster_ip_of(&cluster_ip);
    assert!(ip.starts_with("10.0.0.") && ip != "10.0.0.1", "a ClusterIP from the range: {cluster_ip}");
    assert_eq!(cluster_ip["spec"]["clusterIPs"], json!([ip]));
    assert_eq!(cluster_ip["spec"]["ipFamilies"], json!(["IPv4"]));
    assert_eq!(cluster_ip["spec"]["ipFamilyPolicy"], "SingleStack");
    assert_eq!(cluster_ip["spec"]["internalTrafficPolicy"], "Cluster");
    assert_eq!(svcs.get("externalname-service").await.unwrap()["spec"]["clusterIP"], ip.as_str(), "stored");
    assert_ip_taken(&svcs, &ip).await;

    // "should be able to change the type from ExternalName to NodePort"
    svcs.create(&external_name_service("externalname-np")).await.unwrap();
    let node_port = update(&svcs, "externalname-np", |s| {
        s["spec"]["type"] = json!("NodePort");
        s["spec"]["externalName"] = json!("");
        s["spec"]["ports"] = json!([{"port": 80, "name": "http", "protocol": "TCP", "targetPort": 9376}]);
    })
    .await
    .unwrap();
    let np = node_port_of(&node_port, 0);
    assert!((30000..=32767).contains(&np), "{node_port}");
    assert_eq!(node_port["spec"]["externalTrafficPolicy"], "Cluster");
    let np_ip = cluster_ip_of(&node_port);
    assert!(np_ip.starts_with("10.0.0.") && np_ip != ip, "{node_port}");
    assert_node_port_taken(&svcs, np).await;
    assert_ip_taken(&svcs, &np_ip).await;

    // An explicit ClusterIP and node port are taken as asked.
    svcs.create(&external_name_service("externalname-explicit")).await.unwrap();
    let explicit = update(&svcs, "externalname-explicit", |s| {
        s["spec"]["type"] = json!("NodePort");
        s["spec"]["externalName"] = json!("");
        s["spec"]["clusterIP"] = json!("10.0.0.200");
        s["spec"]["ports"] = json!([{"port": 80, "protocol": "TCP", "nodePort": 31200}]);
    })
    .await
    .unwrap();
    assert_eq!((cluster_ip_of(&explicit), node_port_of(&explicit, 0)), ("10.0.0.200".to_string(), 31200));
    assert_eq!(explicit["spec"]["clusterIPs"], json!(["10.0.0.200"]));
    assert_ip_taken(&svcs, "10.0.0.200").await;
    assert_node_port_taken(&svcs, 31200).await;

    // Deleting frees them all.
    for name in ["externalname-service", "externalname-np", "externalname-explicit"] {
        svcs.delete(name, None).await.unwrap();
    }
    assert_ip_free(&svcs, &ip).await;
    assert_ip_free(&svcs, &np_ip).await;
    assert_ip_free(&svcs, "10.0.0.200").await;
    assert_node_port_free(&svcs, np).await;
    assert_node_port_free(&svcs, 31200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_and_node_port_to_external_name_frees() {
    let api = TestApiserver::start().await;
    api.namespace("e2e").await;
    let svcs = services(&api, "e2e");

    // "should be able to change the type from ClusterIP to ExternalName"
    let created = svcs.create(&tcp_service("clusterip-service")).await.unwrap();
    let ip = cluster_ip_of(&created);
    assert!(!ip.is_empty());
    assert_eq!(created["spec"]["ipFamilyPolicy"], "SingleStack");
    let external = update(&svcs, "clusterip-service", |s| {
        s["spec"]["type"] = json!("ExternalName");
        s["spec"]["externalName"] = json!("externalsvc.e2e.svc.cluster.local");
    })
    .await
    .unwrap();
    assert_eq!(external["spec"].get("clusterIP"), None, "Spec.ClusterIP was not cleared: {external}");
    for f in ["clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        assert_eq!(external["spec"].get(f), None, "{f} cleared as upstream's dropTypeDependentFields");
    }
    assert_eq!(external["spec"]["externalName"], "externalsvc.e2e.svc.cluster.local");
    assert_eq!(svcs.get("clusterip-service").await.unwrap()["spec"].get("clusterIP"), None, "stored");
    assert_ip_free(&svcs, &ip).await;

    // "should be able to change the type from NodePort to ExternalName"
    let created = svcs.create(&node_port_service("nodeport-service", None)).await.unwrap();
    let (ip, np) = (cluster_ip_of(&created), node_port_of(&created, 0));
    assert!((30000..=32767).contains(&np));
    assert_eq!(created["spec"]["externalTrafficPolicy"], "Cluster");
    let external = update(&svcs, "nodeport-service", |s| {
        s["spec"]["type"] = json!("ExternalName");
        s["spec"]["externalName"] = json!("externalsvc.e2e.svc.cluster.local");
    })
    .await
    .unwrap();
    assert_eq!(external["spec"].get("clusterIP"), None, "Spec.ClusterIP was not cleared: {external}");
    assert_eq!(node_port_of(&external, 0), 0, "the node port is cleared: {external}");
    assert_eq!(external["spec"].get("externalTrafficPolicy"), None);
    assert_ip_free(&svcs, &ip).await;
    assert_node_port_free(&svcs, np).await;

    // Back from ExternalName: a new allocation, and the old values taken again if asked for.
    let back = update(&svcs, "nodeport-service", |s| {
        s["spec"]["type"] = json!("NodePort");
        s["spec"]["externalName"] = json!("");
        s["spec"]["clusterIP"] = json!(ip);
        s["spec"]["ports"][0]["nodePort"] = json!(np);
    })
    .await
    .unwrap();
    assert_eq!((cluster_ip_of(&back), node_port_of(&back, 0)), (ip.clone(), np));
    assert_ip_taken(&svcs, &ip).await;
    assert_node_port_taken(&svcs, np).await;

    // Changing the ClusterIP of a ClusterIP type is refused, as upstream.
    let e = api_error(
        update(&svcs, "nodeport-service", |s| {
            s["spec"]["clusterIP"] = json!("10.0.0.77");
            s["spec"]["clusterIPs"] = json!(["10.0.0.77"]);
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(
        e.message,
        "Service \"nodeport-service\" is invalid: spec.clusterIPs[0]: Invalid value: []string{\"10.0.0.77\"}: may not change once set"
    );
    assert_ip_free(&svcs, "10.0.0.77").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_port_with_tcp_and_udp_on_one_port_number() {
    // "should be able to update service type to NodePort listening on same port number but different protocols"
    let api = TestApiserver::start().await;
    api.namespace("e2e").await;
    let svcs = services(&api, "e2e");
    svcs.create(&tcp_service("nodeport-update-service")).await.unwrap();
    let np = update(&svcs, "nodeport-update-service", |s| {
        s["spec"]["type"] = json!("NodePort");
        s["spec"]["ports"] = json!([{"name": "tcp-port", "port": 80, "protocol": "TCP", "targetPort": 9376}]);
    })
    .await
    .unwrap();
    let tcp = node_port_of(&np, 0);
    assert!((30000..=32767).contains(&tcp), "{np}");
    let both = update(&svcs, "nodeport-update-service", |s| {
        s["spec"]["type"] = json!("NodePort");
        s["spec"]["ports"] = json!([
            {"name": "tcp-port", "port": 80, "protocol": "TCP", "targetPort": 9376},
            {"name": "udp-port", "port": 80, "protocol": "UDP", "targetPort": 9376},
        ]);
    })
    .await
    .unwrap();
    let ports = both["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 2, "updated service should have two Ports");
    assert!(ports.iter().all(|p| p["nodePort"].as_i64().unwrap_or(0) != 0), "a node port for each: {both}");
    assert_eq!(node_port_of(&both, 0), tcp, "the TCP port keeps its node port (matched by name)");
    let udp = node_port_of(&both, 1);
    assert_node_port_taken(&svcs, tcp).await;
    assert_node_port_taken(&svcs, udp).await;

    // Dropping the UDP port frees its node port; going back to ClusterIP frees the rest.
    let tcp_only = update(&svcs, "nodeport-update-service", |s| {
        s["spec"]["ports"] = json!([{"name": "tcp-port", "port": 80, "protocol": "TCP", "targetPort": 9376}]);
    })
    .await
    .unwrap();
    assert_eq!(node_port_of(&tcp_only, 0), tcp);
    assert_node_port_free(&svcs, udp).await;
    let plain = update(&svcs, "nodeport-update-service", |s| s["spec"]["type"] = json!("ClusterIP")).await.unwrap();
    assert_eq!(node_port_of(&plain, 0), 0, "{plain}");
    assert_eq!(plain["spec"].get("externalTrafficPolicy"), None, "cleared with the type");
    assert_node_port_free(&svcs, tcp).await;

    // A Service created with TCP and UDP on one port number shares one node port (upstream's initNodePorts).
    let mut dns = node_port_service("dns", None);
    dns["spec"]["ports"] = json!([{"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                                  {"name": "dns-udp", "port": 53, "protocol": "UDP"}]);
    let dns = svcs.create(&dns).await.unwrap();
    assert_ne!(node_port_of(&dns, 0), 0);
    assert_eq!(node_port_of(&dns, 0), node_port_of(&dns, 1), "{dns}");

    // Two ports asking for one new node port on one protocol: upstream's plain "duplicate nodePort" error.
    let e = api_error(
        update(&svcs, "dns", |s| {
            s["spec"]["ports"] = json!([{"name": "a", "port": 53, "protocol": "TCP", "nodePort": 31999},
                                        {"name": "b", "port": 54, "protocol": "TCP", "nodePort": 31999}]);
        })
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.message.as_str()), (500, "duplicate nodePort: {TCP 31999}"));
    assert_node_port_free(&svcs, 31999).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_port_collisions_range_and_release_on_delete() {
    let api = TestApiserver::start().await;
    api.namespace("e2e").await;
    let svcs = services(&api, "e2e");

    // "should prevent NodePort collisions"
    let first = svcs.create(&node_port_service("nodeport-collision-1", None)).await.unwrap();
    let port = node_port_of(&first, 0);
    assert!((30000..=32767).contains(&port));
    let e = api_error(svcs.create(&node_port_service("nodeport-collision-2", Some(port))).await.unwrap_err());
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        format!(
            "Service \"nodeport-collision-2\" is invalid: spec.ports[0].nodePort: Invalid value: {port}: provided port is already allocated"
        )
    );
    assert_eq!(e.details.as_ref().unwrap()["causes"][0]["field"], "spec.ports[0].nodePort");
    svcs.delete("nodeport-collision-1", None).await.unwrap();
    let second = svcs.create(&node_port_service("nodeport-collision-2", Some(port))).await.unwrap();
    assert_eq!(node_port_of(&second, 0), port);

    // "should check NodePort out-of-range"
    let range_test = svcs.create(&node_port_service("nodeport-range-test", None)).await.unwrap();
    let before = node_port_of(&range_test, 0);
    let out_of_range = 1234;
    let expected = format!(
        "Service \"nodeport-range-test\" is invalid: spec.ports[0].nodePort: Invalid value: {out_of_range}: provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
    let e = api_error(
        update(&svcs, "nodeport-range-test", |s| s["spec"]["ports"][0]["nodePort"] = json!(out_of_range))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.message.as_str()), (422, expected.as_str()));
    assert_eq!(node_port_of(&svcs.get("nodeport-range-test").await.unwrap(), 0), before, "unchanged");
    assert_node_port_taken(&svcs, before).await;
    svcs.delete("nodeport-range-test", None).await.unwrap();
    let e = api_error(svcs.create(&node_port_service("nodeport-range-test", Some(out_of_range))).await.unwrap_err());
    assert_eq!(e.message, expected);

    // "should release NodePorts on delete"
    let reuse = svcs.create(&node_port_service("nodeport-reuse", None)).await.unwrap();
    let port = node_port_of(&reuse, 0);
    svcs.delete("nodeport-reuse", None).await.unwrap();
    let again = svcs.create(&node_port_service("nodeport-reuse", Some(port))).await.unwrap();
    assert_eq!(node_port_of(&again, 0), port);

    // A node port on a ClusterIP Service is refused by validation.
    let mut bad = tcp_service("clusterip-with-node-port");
    bad["spec"]["ports"][0]["nodePort"] = json!(31000);
    let e = api_error(svcs.create(&bad).await.unwrap_err());
    assert_eq!(
        e.message,
        "Service \"clusterip-with-node-port\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_leave_nothing_allocated() {
    // Tiny ranges make the allocator's state countable: 10.253.7.0/29 has six usable IPs, the first kept for the
    // kubernetes Service, so five to hand out; three node ports.
    let api = TestApiserver::start_with(&[
        "--service-cluster-ip-range=10.253.7.0/29",
        "--service-node-port-range=30000-30002",
    ])
    .await;
    api.namespace("e2e").await;
    let svcs = services(&api, "e2e");
    svcs.create(&external_name_service("ext")).await.unwrap();

    // ExternalName to NodePort: the ClusterIP and the first node port are taken, then the second port is out of
    // range: the update fails and gives both back.
    let e = api_error(
        update(&svcs, "ext", |s| {
            s["spec"]["type"] = json!("NodePort");
            s["spec"]["externalName"] = json!("");
            s["spec"]["ports"] = json!([{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 40000}]);
        })
        .await
        .unwrap_err(),
    );
    assert!(e.message.ends_with("spec.ports[1].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-30002"), "{e}");
    // ExternalName to ClusterIP with an invalid port name: allocated, then refused by validation, given back.
    let e = api_error(
        update(&svcs, "ext", |s| {
            s["spec"]["type"] = json!("NodePort");
            s["spec"]["externalName"] = json!("");
            s["spec"]["ports"] = json!([{"name": "Not_A_Label", "port": 80}]);
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(e.message.contains("spec.ports[0].name"), "{e}");
    // A create refused by validation after its allocation, likewise.
    let mut bad = node_port_service("bad", None);
    bad["spec"]["ports"][0]["name"] = json!("Not_A_Label");
    assert_eq!(api_error(svcs.create(&bad).await.unwrap_err()).code, 422);
    // A dry run shows what it would allocate (as upstream's dry-run allocators: the range's base) and takes nothing.
    let dry = api
        .client
        .request(
            http::Method::PUT,
            "/api/v1/namespaces/e2e/services/ext?dryRun=All",
            Some((
                {
                    let mut s = svcs.get("ext").await.unwrap();
                    s["spec"]["type"] = json!("NodePort");
                    s["spec"]["externalName"] = json!("");
                    s["spec"]["ports"] = json!([{"port": 80}]);
                    s.to_string().into()
                },
                "application/json",
            )),
        )
        .await
        .unwrap();
    assert_eq!((cluster_ip_of(&dry), node_port_of(&dry, 0)), ("10.253.7.0".to_string(), 30000));
    assert_eq!(svcs.get("ext").await.unwrap()["spec"]["type"], "ExternalName");

    // Everything is still free: three NodePort Services take the three node ports, two ClusterIP ones the
    // remaining IPs; then both ranges are full.
    for i in 0..3 {
        let s = svcs.create(&node_port_service(&format!("np{i}"), None)).await.unwrap();
        assert!((30000..=30002).contains(&node_port_of(&s, 0)), "{s}");
    }
    let e = api_error(svcs.create(&node_port_service("np3", None)).await.unwrap_err());
    assert_eq!(
        (e.code, e.message.as_str()),
        (500, "Internal error occurred: failed to allocate a nodePort: range is full")
    );
    for i in 0..2 {
        svcs.create(&tcp_service(&format!("cip{i}"))).await.unwrap();
    }
    let e = api_error(svcs.create(&tcp_service("cip2")).await.unwrap_err());
    assert_eq!(e.message, "Internal error occurred: failed to allocate a serviceIP: range is full");
    // A full range refuses a type change too, and the refused update keeps the Service as it was.
    let e = api_error(
        update(&svcs, "ext", |s| {
            s["spec"]["type"] = json!("ClusterIP");
            s["spec"]["externalName"] = json!("");
            s["spec"]["ports"] = json!([{"port": 80}]);
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(e.message, "Internal error occurred: failed to allocate a serviceIP: range is full");
    // Freeing by type change makes room: np0 to ExternalName frees an IP and a node port.
    let np0 = svcs.get("np0").await.unwrap();
    update(&svcs, "np0", |s| {
        s["spec"]["type"] = json!("ExternalName");
        s["spec"]["externalName"] = json!("x.example.com");
    })
    .await
    .unwrap();
    let to_np = update(&svcs, "ext", |s| {
        s["spec"]["type"] = json!("NodePort");
        s["spec"]["externalName"] = json!("");
        s["spec"]["ports"] = json!([{"port": 80}]);
    })
    .await
    .unwrap();
    assert_eq!((cluster_ip_of(&to_np), node_port_of(&to_np, 0)), (cluster_ip_of(&np0), node_port_of(&np0, 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_changes_through_kubectl() {
    let api = TestApiserver::start().await;
    let k = Kubectl::new(&api);
    let svcs = services(&api, "default");
    k.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]).await;
    let ip = cluster_ip_of(&k.json(&["get", "svc", "web"]).await);
    assert!(ip.starts_with("10.0.0."), "{ip}");

    // To NodePort and back with strategic merge patches.
    k.ok(&["patch", "svc", "web", "-p", r#"{"spec":{"type":"NodePort"}}"#]).await;
    let np = node_port_of(&k.json(&["get", "svc", "web"]).await, 0);
    assert!((30000..=32767).contains(&np));
    let table = k.ok(&["get", "svc", "web"]).await;
    assert!(table.contains("NodePort") && table.contains(&format!("80:{np}/TCP")), "{table}");
    k.ok(&["patch", "svc", "web", "-p", r#"{"spec":{"type":"ClusterIP"}}"#]).await;
    let back = k.json(&["get", "svc", "web"]).await;
    assert_eq!((node_port_of(&back, 0), cluster_ip_of(&back)), (0, ip.clone()));
    assert_node_port_free(&svcs, np).await;

    // To ExternalName: the ClusterIP goes and is free again.
    k.ok(&["patch", "svc", "web", "-p", r#"{"spec":{"type":"ExternalName","externalName":"x.example.com"}}"#]).await;
    let external = k.json(&["get", "svc", "web"]).await;
    assert_eq!(external["spec"].get("clusterIP"), None, "{external}");
    assert_eq!(external["spec"].get("clusterIPs"), None);
    let table = k.ok(&["get", "svc", "web"]).await;
    assert!(table.contains("ExternalName") && table.contains("x.example.com"), "{table}");
    assert_ip_free(&svcs, &ip).await;

    // A JSON merge patch back to ClusterIP allocates a new one.
    k.ok(&["patch", "svc", "web", "--type=merge", "-p", r#"{"spec":{"type":"ClusterIP","externalName":null}}"#]).await;
    let again = k.json(&["get", "svc", "web"]).await;
    assert!(cluster_ip_of(&again).starts_with("10.0.0."), "{again}");
    assert_eq!(again["spec"]["ipFamilies"], json!(["IPv4"]));

    // kubectl shows the allocator's refusal in upstream's words.
    k.ok(&["create", "service", "nodeport", "np", "--tcp=80:80", "--node-port=31500"]).await;
    let out = k.run(&["create", "service", "nodeport", "np2", "--tcp=80:80", "--node-port=31500"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "Service \"np2\" is invalid: spec.ports[0].nodePort: Invalid value: 31500: provided port is already allocated"
        ),
        "{stderr}"
    );
    // Patch errors come back the same way.
    let out = k
        .run(&[
            "patch",
            "svc",
            "np",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/ports/0/nodePort","value":80}]"#,
        ])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("provided port is not in the valid range. The range of valid ports is 30000-32767"),
        "{stderr}"
    );
    let _ = svcs.patch("np", PatchType::Merge, &json!({"spec": {"type": "ClusterIP"}})).await.unwrap();
    assert_node_port_free(&svcs, 31500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_health_check_node_port_follows_the_traffic_policy() {
    let api = TestApiserver::start().await;
    let svcs = services(&api, "default");
    let mut lb = tcp_service("lb");
    lb["spec"]["type"] = json!("LoadBalancer");
    lb["spec"]["externalTrafficPolicy"] = json!("Local");
    let created = svcs.create(&lb).await.unwrap();
    assert_eq!(created["spec"]["allocateLoadBalancerNodePorts"], true, "defaulted");
    let hc = created["spec"]["healthCheckNodePort"].as_i64().unwrap();
    let np = node_port_of(&created, 0);
    assert!((30000..=32767).contains(&hc) && hc != np, "{created}");
    assert_node_port_taken(&svcs, hc).await;
    // Local to Cluster: the health check node port is cleared and free again.
    let cluster = update(&svcs, "lb", |s| s["spec"]["externalTrafficPolicy"] = json!("Cluster")).await.unwrap();
    assert_eq!(cluster["spec"].get("healthCheckNodePort"), None, "{cluster}");
    assert_node_port_free(&svcs, hc).await;
    // Back to Local asks for one again; to ClusterIP then clears the LoadBalancer-only fields and frees everything.
    let local = update(&svcs, "lb", |s| s["spec"]["externalTrafficPolicy"] = json!("Local")).await.unwrap();
    let hc = local["spec"]["healthCheckNodePort"].as_i64().unwrap();
    let plain = update(&svcs, "lb", |s| s["spec"]["type"] = json!("ClusterIP")).await.unwrap();
    for f in ["healthCheckNodePort", "allocateLoadBalancerNodePorts", "externalTrafficPolicy"] {
        assert_eq!(plain["spec"].get(f), None, "{f}: {plain}");
    }
    assert_eq!(node_port_of(&plain, 0), 0);
    assert_node_port_free(&svcs, hc).await;
    assert_node_port_free(&svcs, np).await;
    // allocateLoadBalancerNodePorts: false takes no node port unless one is asked for.
    let mut no_ports = tcp_service("lb-no-ports");
    no_ports["spec"]["type"] = json!("LoadBalancer");
    no_ports["spec"]["allocateLoadBalancerNodePorts"] = json!(false);
    assert_eq!(node_port_of(&svcs.create(&no_ports).await.unwrap(), 0), 0);
}

"""The Python `kubernetes` client with its defaults (JSON; a dict patch is a strategic merge patch) against the
apiserver named by the kubeconfig in argv[1], in a fresh namespace argv[2]. Every check is an assert: any failure
exits non-zero with a traceback. Prints "ok" at the end."""

import json
import sys
import threading
import time

from kubernetes import client, config, dynamic, utils, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
ns = sys.argv[2]
core = client.CoreV1Api()
apps = client.AppsV1Api()
meta = client.V1ObjectMeta


def api_error(call, *args, **kwargs):
    """The ApiException a call raises, with its Status body parsed."""
    try:
        call(*args, **kwargs)
    except ApiException as e:
        return e.status, json.loads(e.body)
    raise AssertionError(f"{call.__name__} should fail")


# Version and discovery.
version = client.VersionApi().get_code()
assert version.major == "1" and version.git_version.startswith("v1."), version
groups = [g.name for g in client.ApisApi().get_api_versions().groups]
assert "apps" in groups and "batch" in groups, groups
resources = {r.name for r in core.get_api_resources().resources}
assert {"pods", "pods/status", "configmaps", "namespaces"} <= resources, resources

# Namespace.
created = core.create_namespace(client.V1Namespace(metadata=meta(name=ns, labels={"team": "py"})))
assert created.status.phase == "Active", created.status
assert created.metadata.labels["kubernetes.io/metadata.name"] == ns
names = [n.metadata.name for n in core.list_namespace(label_selector="team=py").items]
assert names == [ns], names

# ConfigMaps: create, read, list with selectors, three kinds of patch, conflicts and errors.
cm = core.create_namespaced_config_map(
    ns, client.V1ConfigMap(metadata=meta(name="cm", labels={"app": "py"}), data={"a": "1"})
)
assert cm.metadata.uid and cm.metadata.resource_version and cm.metadata.creation_timestamp.year >= 2024, cm.metadata
assert cm.data == {"a": "1"}
assert core.read_namespaced_config_map("cm", ns).metadata.uid == cm.metadata.uid
core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta(name="other", labels={"app": "other"})))
listed = core.list_namespaced_config_map(ns, label_selector="app=py")
assert [c.metadata.name for c in listed.items] == ["cm"], listed.items
assert listed.metadata.resource_version
listed = core.list_namespaced_config_map(ns, label_selector="app in (py, other)")
assert sorted(c.metadata.name for c in listed.items) == ["cm", "other"]
listed = core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace={ns},metadata.name=other")
assert [c.metadata.name for c in listed.items] == ["other"]
page = core.list_namespaced_config_map(ns, limit=1)
assert len(page.items) == 1 and page.metadata._continue, page.metadata
rest = core.list_namespaced_config_map(ns, limit=1, _continue=page.metadata._continue)
assert len(rest.items) == 1 and rest.items[0].metadata.name != page.items[0].metadata.name

patched = core.patch_namespaced_config_map("cm", ns, {"data": {"b": "2"}})  # strategic merge
assert patched.data == {"a": "1", "b": "2"}, patched.data
patched = core.patch_namespaced_config_map(
    "cm", ns, {"data": {"a": None}}, _content_type="application/merge-patch+json"
)
assert patched.data == {"b": "2"}, patched.data
patched = core.patch_namespaced_config_map("cm", ns, [{"op": "replace", "path": "/data/b", "value": "3"}])
assert patched.data == {"b": "3"}, patched.data

stale = client.V1ConfigMap(metadata=meta(name="cm", resource_version=cm.metadata.resource_version), data={"x": "y"})
code, status = api_error(core.replace_namespaced_config_map, "cm", ns, stale)
assert (code, status["reason"]) == (409, "Conflict"), status
code, status = api_error(core.create_namespaced_config_map, ns, client.V1ConfigMap(metadata=meta(name="cm")))
assert (code, status["reason"]) == (409, "AlreadyExists"), status
code, status = api_error(core.read_namespaced_config_map, "missing", ns)
assert (code, status["reason"], status["details"]["name"]) == (404, "NotFound", "missing"), status

# A Deployment through AppsV1Api: defaults, patch, scale, status.
template = client.V1PodTemplateSpec(
    metadata=meta(labels={"app": "py"}),
    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36")]),
)
body = client.V1Deployment(
    metadata=meta(name="web"),
    spec=client.V1DeploymentSpec(
        replicas=2, selector=client.V1LabelSelector(match_labels={"app": "py"}), template=template
    ),
)
d = apps.create_namespaced_deployment(ns, body)
assert d.metadata.generation == 1
assert d.spec.strategy.type == "RollingUpdate" and d.spec.revision_history_limit == 10, d.spec
assert d.spec.template.spec.restart_policy == "Always"
assert d.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
d = apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 3}})
assert (d.spec.replicas, d.metadata.generation) == (3, 2), (d.spec.replicas, d.metadata.generation)
scale = apps.read_namespaced_deployment_scale("web", ns)
assert scale.spec.replicas == 3, scale
scale = apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 1}})
assert scale.spec.replicas == 1, scale
d.status = client.V1DeploymentStatus(
    observed_generation=3,
    replicas=1,
    conditions=[
        client.V1DeploymentCondition(type="Available", status="True", reason="MinimumReplicasAvailable", message="ok")
    ],
)
d.metadata.resource_version = None
d = apps.replace_namespaced_deployment_status("web", ns, d)
assert d.status.conditions[0].reason == "MinimumReplicasAvailable", d.status
d = apps.read_namespaced_deployment_status("web", ns)
assert (d.status.observed_generation, d.spec.replicas) == (3, 1), (d.status, d.spec.replicas)
code, status = api_error(
    apps.create_namespaced_deployment,
    ns,
    client.V1Deployment(
        metadata=meta(name="bad"),
        spec=client.V1DeploymentSpec(selector=client.V1LabelSelector(match_labels={"app": "x"}), template=template),
    ),
)
assert (code, status["reason"]) == (422, "Invalid"), status
assert any(c["field"] == "spec.template.metadata.labels" for c in status["details"]["causes"]), status

# Pods: label and field selectors, status patch.
for name, app in [("p1", "py"), ("p2", "py"), ("q", "other")]:
    core.create_namespaced_pod(
        ns,
        client.V1Pod(
            metadata=meta(name=name, labels={"app": app}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36")]),
        ),
    )
pods = core.list_namespaced_pod(ns, label_selector="app=py")
assert sorted(p.metadata.name for p in pods.items) == ["p1", "p2"], pods.items
assert all(p.status.phase == "Pending" for p in pods.items)
pods = core.list_namespaced_pod(ns, label_selector="app!=py")
assert [p.metadata.name for p in pods.items] == ["q"]
pods = core.list_pod_for_all_namespaces(field_selector="metadata.name=p2")
assert [(p.metadata.namespace, p.metadata.name) for p in pods.items] == [(ns, "p2")]
p = core.patch_namespaced_pod_status("p1", ns, {"status": {"phase": "Running", "podIP": "10.244.0.9"}})
assert (p.status.phase, p.status.pod_ip) == ("Running", "10.244.0.9"), p.status
pods = core.list_namespaced_pod(ns, field_selector="status.phase=Running")
assert [p.metadata.name for p in pods.items] == ["p1"]

# Watch: a replay from a list's resourceVersion, then live events, then a watch the server ends at timeoutSeconds.
rv = core.list_namespaced_config_map(ns).metadata.resource_version
core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta(name="w", labels={"w": "yes"}), data={"n": "1"}))
core.patch_namespaced_config_map("w", ns, {"data": {"n": "2"}})
core.delete_namespaced_config_map("w", ns)
w = watch.Watch()
events = []
for e in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, label_selector="w=yes", timeout_seconds=10):
    events.append((e["type"], e["object"].metadata.name, (e["object"].data or {}).get("n")))
    if e["type"] == "DELETED":
        w.stop()
assert events == [("ADDED", "w", "1"), ("MODIFIED", "w", "2"), ("DELETED", "w", "2")], events


def later():
    time.sleep(0.5)
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta(name="live", labels={"live": "yes"})))


threading.Thread(target=later).start()
w = watch.Watch()
seen = []
for e in w.stream(core.list_namespaced_config_map, ns, label_selector="live=yes", timeout_seconds=10):
    seen.append((e["type"], e["object"].metadata.name))
    w.stop()
assert seen == [("ADDED", "live")], seen

start = time.monotonic()
idle = list(watch.Watch().stream(core.list_namespaced_pod, ns, label_selector="app=none", timeout_seconds=2))
took = time.monotonic() - start
assert idle == [] and 1.5 < took < 8, (idle, took)

# Deployment watch via AppsV1Api sees the object typed.
w = watch.Watch()
for e in w.stream(apps.list_namespaced_deployment, ns, timeout_seconds=5):
    assert e["type"] == "ADDED" and isinstance(e["object"], client.V1Deployment), e
    assert e["object"].spec.replicas == 1
    w.stop()

# (Custom resources through CustomObjectsApi join this script with issue 16, when the apiserver serves them.)

# utils.create_from_dict (kind -> API class) and the DynamicClient (discovery-driven).
utils.create_from_dict(
    client.ApiClient(),
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
     "spec": {"selector": {"app": "py"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    namespace=ns,
)
svc = core.read_namespaced_service("svc", ns)
assert svc.spec.cluster_ip and svc.spec.ports[0].protocol == "TCP" and svc.spec.type == "ClusterIP", svc.spec
dyn = dynamic.DynamicClient(client.ApiClient())
deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
d = deployments.get(name="web", namespace=ns)
assert d.spec.replicas == 1, d.spec
configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
configmaps.create(body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dyn"}, "data": {"x": "1"}},
                  namespace=ns)
configmaps.patch(body={"data": {"x": "2"}}, name="dyn", namespace=ns, content_type="application/merge-patch+json")
assert configmaps.get(name="dyn", namespace=ns).data.x == "2"

# A CustomResourceDefinition and its objects through the DynamicClient (discovery refreshed for the new kind).
ext = client.ApiextensionsV1Api()
ext.create_custom_resource_definition({
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gizmos.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo", "shortNames": ["gz"]},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 1}}},
                               "status": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}}}}]},
})
for _ in range(100):
    conds = ext.read_custom_resource_definition("gizmos.example.com").status.conditions or []
    if any(c.type == "Established" and c.status == "True" for c in conds):
        break
    time.sleep(0.05)
else:
    raise AssertionError("the CRD never became Established")
dyn = dynamic.DynamicClient(client.ApiClient())
gizmos = dyn.resources.get(api_version="example.com/v1", kind="Gizmo")
assert gizmos.namespaced and gizmos.name == "gizmos" and gizmos.short_names == ["gz"], gizmos
g = gizmos.create(body={"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "g1"},
                        "spec": {"size": 2, "dropped": True}}, namespace=ns)
assert g.spec.size == 2 and "dropped" not in g.spec.to_dict(), g.spec
assert [i.metadata.name for i in gizmos.get(namespace=ns).items] == ["g1"]
gizmos.patch(body={"spec": {"size": 4}}, name="g1", namespace=ns, content_type="application/merge-patch+json")
gizmos.status.patch(body={"status": {"ok": True}}, name="g1", namespace=ns,
                    content_type="application/merge-patch+json")
g = gizmos.get(name="g1", namespace=ns)
assert g.spec.size == 4 and g.status.ok is True and g.metadata.generation == 2, g
try:
    gizmos.create(body={"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "bad"},
                        "spec": {"size": 0}}, namespace=ns)
    raise AssertionError("a Gizmo below the schema's minimum was accepted")
except ApiException as e:
    assert e.status == 422 and "spec.size" in json.loads(e.body)["message"], e.body
custom = client.CustomObjectsApi()
listed = custom.list_namespaced_custom_object("example.com", "v1", ns, "gizmos")
assert [i["metadata"]["name"] for i in listed["items"]] == ["g1"], listed
custom.delete_namespaced_custom_object("example.com", "v1", ns, "gizmos", "g1")
ext.delete_custom_resource_definition("gizmos.example.com")

# Deletes.
apps.delete_namespaced_deployment("web", ns)
code, _ = api_error(apps.read_namespaced_deployment, "web", ns)
assert code == 404
core.delete_collection_namespaced_pod(ns, label_selector="app=py", grace_period_seconds=0)
left = [p.metadata.name for p in core.list_namespaced_pod(ns).items if p.metadata.deletion_timestamp is None]
assert left == ["q"], left
core.delete_namespace(ns)
assert core.read_namespace(ns).status.phase == "Terminating"
print("ok")

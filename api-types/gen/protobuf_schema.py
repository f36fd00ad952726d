#!/usr/bin/env python3
"""Generates `api-types/src/protobuf_schema.rs`: the protobuf descriptor tables `api_types::protobuf` decodes with.

The generated file is committed; nothing runs this at build time. Regenerate by hand from the workspace root:

    python3 api-types/gen/protobuf_schema.py
    python3 api-types/gen/protobuf_schema.py --verify-openapi   # also cross-check the JSON names

Input: the prost-generated sources of the `k8s-pb` crate, version 0.9.0 (`cargo fetch` puts them at
`~/.cargo/registry/src/*/k8s-pb-0.9.0/src/**/mod.rs`; override with `--k8s-pb DIR`). Only the messages reachable
from `ROOTS` are emitted. Python 3 standard library only; the output is formatted with `rustfmt --edition 2024` when
rustfmt is on the PATH.

JSON names: the proto field names are upstream's JSON names, which prost turned into snake_case; this script turns
them back into camelCase, with `JSON_NAME_OVERRIDES` for the acronyms upstream keeps upper-case (`hostIP`,
`targetWWNs`, ...). Fields whose Go struct is embedded with `json:",inline"` are listed in `INLINE_FIELDS`: their
message's fields are merged into the parent object. `--verify-openapi` checks every emitted name against the serde
field names of the `k8s-openapi` 0.29 crate (generated from upstream's OpenAPI, so from the Go `json` tags) and
fails on a mismatch.

Zero values: Go clients write every non-pointer field to the wire, zero or not; `OMIT_ZERO` lists the scalar fields
that are non-pointer `omitempty` in Go (emitted as `Field::omitempty`), whose zero value upstream's JSON encoding
leaves out, and the decoder too. To add a root, add it to `ROOTS` and add the `omitempty` non-pointer scalars of
its new messages to `OMIT_ZERO` (from upstream's `types.go`); fields not listed keep a zero value found on the wire.
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

# (apiVersion, kind, Rust path of the message in k8s-pb). `DeleteOptions` is accepted with any apiVersion (upstream
# registers it in every group version); the decoder special-cases that kind.
ROOTS = [
    ("apps/v1", "Deployment", "api::apps::v1::Deployment"),
    ("apps/v1", "ReplicaSet", "api::apps::v1::ReplicaSet"),
    ("apps/v1", "StatefulSet", "api::apps::v1::StatefulSet"),
    ("apps/v1", "DaemonSet", "api::apps::v1::DaemonSet"),
    ("v1", "ConfigMap", "api::core::v1::ConfigMap"),
    ("v1", "Secret", "api::core::v1::Secret"),
    ("v1", "Namespace", "api::core::v1::Namespace"),
    ("v1", "Pod", "api::core::v1::Pod"),
    ("v1", "Service", "api::core::v1::Service"),
    ("v1", "ServiceAccount", "api::core::v1::ServiceAccount"),
    ("batch/v1", "Job", "api::batch::v1::Job"),
    ("batch/v1", "CronJob", "api::batch::v1::CronJob"),
    ("authentication.k8s.io/v1", "SelfSubjectReview", "api::authentication::v1::SelfSubjectReview"),
    ("authentication.k8s.io/v1", "TokenReview", "api::authentication::v1::TokenReview"),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview", "api::authorization::v1::SelfSubjectAccessReview"),
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview", "api::authorization::v1::SelfSubjectRulesReview"),
    ("authorization.k8s.io/v1", "SubjectAccessReview", "api::authorization::v1::SubjectAccessReview"),
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview", "api::authorization::v1::LocalSubjectAccessReview"),
    ("meta.k8s.io/v1", "DeleteOptions", "apimachinery::pkg::apis::meta::v1::DeleteOptions"),
    ("policy/v1", "Eviction", "api::policy::v1::Eviction"),
    # What more of kubectl's `create` generators and `autoscale` send.
    ("autoscaling/v1", "HorizontalPodAutoscaler", "api::autoscaling::v1::HorizontalPodAutoscaler"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "api::autoscaling::v2::HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget", "api::policy::v1::PodDisruptionBudget"),
    ("rbac.authorization.k8s.io/v1", "Role", "api::rbac::v1::Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "api::rbac::v1::RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "api::rbac::v1::ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "api::rbac::v1::ClusterRoleBinding"),
    ("scheduling.k8s.io/v1", "PriorityClass", "api::scheduling::v1::PriorityClass"),
    ("v1", "ResourceQuota", "api::core::v1::ResourceQuota"),
    ("v1", "Endpoints", "api::core::v1::Endpoints"),
    ("v1", "Event", "api::core::v1::Event"),
    ("v1", "Node", "api::core::v1::Node"),
    ("networking.k8s.io/v1", "Ingress", "api::networking::v1::Ingress"),
    ("coordination.k8s.io/v1", "Lease", "api::coordination::v1::Lease"),
]

# Messages with a JSON form of their own (custom MarshalJSON upstream): the decoder handles them by hand.
SPECIAL = {
    "apimachinery::pkg::apis::meta::v1::Time": "Time",
    "apimachinery::pkg::apis::meta::v1::MicroTime": "MicroTime",
    "apimachinery::pkg::apis::meta::v1::Duration": "Duration",
    "apimachinery::pkg::apis::meta::v1::FieldsV1": "FieldsV1",
    "apimachinery::pkg::api::resource::Quantity": "Quantity",
    "apimachinery::pkg::util::intstr::IntOrString": "IntOrString",
    "apimachinery::pkg::runtime::RawExtension": "RawExtension",
    # Go `type ExtraValue []string`: proto wraps the slice as `repeated string items = 1`, JSON is the bare array.
    "api::authentication::v1::ExtraValue": "StringList",
    "api::authorization::v1::ExtraValue": "StringList",
}

# snake_case prost name -> upstream JSON name, wherever plain camelCase is wrong (upper-case acronyms and the like).
JSON_NAME_OVERRIDES = {
    "current_cpu_utilization_percentage": "currentCPUUtilizationPercentage",
    "pod_cid_rs": "podCIDRs",
    "boot_id": "bootID",
    "client_ip": "clientIP",
    "cluster_ip": "clusterIP",
    "cluster_ips": "clusterIPs",
    "container_id": "containerID",
    "dataset_uuid": "datasetUUID",
    "disk_uri": "diskURI",
    "downward_api": "downwardAPI",
    "external_id": "externalID",
    "external_ips": "externalIPs",
    "host_ip": "hostIP",
    "host_ipc": "hostIPC",
    "host_ips": "hostIPs",
    "host_pid": "hostPID",
    "image_id": "imageID",
    "load_balancer_ip": "loadBalancerIP",
    "machine_id": "machineID",
    "non_resource_ur_ls": "nonResourceURLs",
    "non_resource_urls": "nonResourceURLs",
    "pd_id": "pdID",
    "pod_cidr": "podCIDR",
    "pod_cidrs": "podCIDRs",
    "pod_ip": "podIP",
    "pod_ips": "podIPs",
    "provider_id": "providerID",
    "resource_id": "resourceID",
    "scale_io": "scaleIO",
    "set_hostname_as_fqdn": "setHostnameAsFQDN",
    "storage_policy_id": "storagePolicyID",
    "system_uuid": "systemUUID",
    "target_cpu_utilization_percentage": "targetCPUUtilizationPercentage",
    "target_ww_ns": "targetWWNs",
    "target_wwns": "targetWWNs",
    "volume_id": "volumeID",
}

# (Rust path of the message, snake_case field) of the Go fields embedded with `json:",inline"`.
INLINE_FIELDS = {
    ("api::networking::v1::IngressRule", "ingress_rule_value"),
    ("api::core::v1::Volume", "volume_source"),
    ("api::core::v1::PersistentVolumeSpec", "persistent_volume_source"),
    ("api::core::v1::Probe", "handler"),
    ("api::core::v1::EphemeralContainer", "ephemeral_container_common"),
    ("api::core::v1::ConfigMapVolumeSource", "local_object_reference"),
    ("api::core::v1::ConfigMapProjection", "local_object_reference"),
    ("api::core::v1::ConfigMapKeySelector", "local_object_reference"),
    ("api::core::v1::ConfigMapEnvSource", "local_object_reference"),
    ("api::core::v1::SecretProjection", "local_object_reference"),
    ("api::core::v1::SecretKeySelector", "local_object_reference"),
    ("api::core::v1::SecretEnvSource", "local_object_reference"),
}

# Go fields that are not pointers and carry `omitempty`, per message, by JSON name: Go clients always write these to the
# wire (the gogo marshaller writes every non-pointer field), and upstream's JSON encoding drops their zero value, so the
# decoder drops a zero ("", false, 0) found on the wire for them. Every other scalar field (a Go pointer such as
# `replicas`, or a field without `omitempty` such as `containerPort`) keeps a zero that is on the wire. Fields missing
# here (newer than the data below) keep their zero value.
# Derived from the Go struct tags and field types (reflect data) of kubectl v1.32.4; upstream's source of truth is
# the `json:"...,omitempty"` tags and pointer fields of k8s.io/api and k8s.io/apimachinery `types.go`.
OMIT_ZERO = {
    "api::apps::v1::DaemonSetCondition": "reason message",
    "api::apps::v1::DaemonSetSpec": "minReadySeconds",
    "api::apps::v1::DaemonSetStatus": "observedGeneration updatedNumberScheduled numberAvailable numberUnavailable",
    "api::apps::v1::DaemonSetUpdateStrategy": "type",
    "api::apps::v1::DeploymentCondition": "reason message",
    "api::apps::v1::DeploymentSpec": "minReadySeconds paused",
    "api::apps::v1::DeploymentStatus": (
        "observedGeneration replicas updatedReplicas availableReplicas unavailableReplicas readyReplicas"
    ),
    "api::apps::v1::DeploymentStrategy": "type",
    "api::apps::v1::ReplicaSetCondition": "reason message",
    "api::apps::v1::ReplicaSetSpec": "minReadySeconds",
    "api::apps::v1::ReplicaSetStatus": "fullyLabeledReplicas observedGeneration readyReplicas availableReplicas",
    "api::apps::v1::StatefulSetCondition": "reason message",
    "api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy": "whenDeleted whenScaled",
    "api::apps::v1::StatefulSetSpec": "podManagementPolicy minReadySeconds",
    "api::apps::v1::StatefulSetStatus": (
        "observedGeneration readyReplicas currentReplicas updatedReplicas currentRevision updateRevision"
    ),
    "api::apps::v1::StatefulSetUpdateStrategy": "type",
    "api::authentication::v1::TokenReviewSpec": "token",
    "api::authentication::v1::TokenReviewStatus": "authenticated error",
    "api::authentication::v1::UserInfo": "username uid",
    "api::authorization::v1::FieldSelectorAttributes": "rawSelector",
    "api::authorization::v1::LabelSelectorAttributes": "rawSelector",
    "api::authorization::v1::NonResourceAttributes": "path verb",
    "api::authorization::v1::ResourceAttributes": "namespace verb group version resource subresource name",
    "api::authorization::v1::SelfSubjectRulesReviewSpec": "namespace",
    "api::authorization::v1::SubjectAccessReviewSpec": "user uid",
    "api::authorization::v1::SubjectAccessReviewStatus": "reason evaluationError denied",
    "api::authorization::v1::SubjectRulesReviewStatus": "evaluationError",
    "api::batch::v1::CronJobSpec": "concurrencyPolicy",
    "api::batch::v1::JobCondition": "reason message",
    "api::batch::v1::JobStatus": "active succeeded failed completedIndexes",
    "api::core::v1::AwsElasticBlockStoreVolumeSource": "fsType partition readOnly",
    "api::core::v1::AzureFileVolumeSource": "readOnly",
    "api::core::v1::CephFsVolumeSource": "path user secretFile readOnly",
    "api::core::v1::CinderVolumeSource": "fsType readOnly",
    "api::core::v1::Container": (
        "image workingDir terminationMessagePath imagePullPolicy stdin stdinOnce tty terminationMessagePolicy"
    ),
    "api::core::v1::ContainerPort": "name hostPort protocol hostIP",
    "api::core::v1::ContainerStateTerminated": "signal reason message containerID",
    "api::core::v1::ContainerStateWaiting": "reason message",
    "api::core::v1::ContainerStatus": "containerID",
    "api::core::v1::EmptyDirVolumeSource": "medium",
    "api::core::v1::EnvFromSource": "prefix",
    "api::core::v1::EnvVar": "value",
    "api::core::v1::EphemeralContainer": "targetContainerName",
    "api::core::v1::EphemeralContainerCommon": (
        "image workingDir terminationMessagePath imagePullPolicy stdin stdinOnce tty terminationMessagePolicy"
    ),
    "api::core::v1::FcVolumeSource": "fsType readOnly",
    "api::core::v1::FlexVolumeSource": "fsType readOnly",
    "api::core::v1::FlockerVolumeSource": "datasetName datasetUUID",
    "api::core::v1::GcePersistentDiskVolumeSource": "fsType partition readOnly",
    "api::core::v1::GitRepoVolumeSource": "revision directory",
    "api::core::v1::GlusterfsVolumeSource": "readOnly",
    "api::core::v1::HttpGetAction": "path host scheme",
    "api::core::v1::ImageVolumeSource": "reference pullPolicy",
    "api::core::v1::IscsiVolumeSource": "iscsiInterface fsType readOnly chapAuthDiscovery chapAuthSession",
    "api::core::v1::LoadBalancerIngress": "ip hostname",
    "api::core::v1::LocalObjectReference": "name",
    "api::core::v1::ModifyVolumeStatus": "targetVolumeAttributesClassName",
    "api::core::v1::NamespaceCondition": "reason message",
    "api::core::v1::NamespaceStatus": "phase",
    "api::core::v1::NfsVolumeSource": "readOnly",
    "api::core::v1::ObjectFieldSelector": "apiVersion",
    "api::core::v1::ObjectReference": "kind namespace name uid apiVersion resourceVersion fieldPath",
    "api::core::v1::PersistentVolumeClaimCondition": "reason message",
    "api::core::v1::PersistentVolumeClaimSpec": "volumeName",
    "api::core::v1::PersistentVolumeClaimStatus": "phase",
    "api::core::v1::PersistentVolumeClaimVolumeSource": "readOnly",
    "api::core::v1::PhotonPersistentDiskVolumeSource": "fsType",
    "api::core::v1::PodCondition": "reason message",
    "api::core::v1::PodDnsConfigOption": "name",
    "api::core::v1::PodSpec": (
        "restartPolicy dnsPolicy serviceAccountName serviceAccount nodeName hostNetwork hostPID hostIPC hostname "
        "subdomain schedulerName priorityClassName"
    ),
    "api::core::v1::PodStatus": "phase message reason hostIP podIP qosClass nominatedNodeName resize",
    "api::core::v1::PortworxVolumeSource": "fsType readOnly",
    "api::core::v1::Probe": "initialDelaySeconds timeoutSeconds periodSeconds successThreshold failureThreshold",
    "api::core::v1::QuobyteVolumeSource": "readOnly user group tenant",
    "api::core::v1::RbdVolumeSource": "fsType pool user keyring readOnly",
    "api::core::v1::ResourceClaim": "request",
    "api::core::v1::ResourceFieldSelector": "containerName",
    "api::core::v1::ResourceHealth": "health",
    "api::core::v1::ScaleIoVolumeSource": (
        "sslEnabled protectionDomain storagePool storageMode volumeName fsType readOnly"
    ),
    "api::core::v1::SeLinuxOptions": "user role type level",
    "api::core::v1::Secret": "type",
    "api::core::v1::SecretVolumeSource": "secretName",
    "api::core::v1::ServiceAccountTokenProjection": "audience",
    "api::core::v1::ServicePort": "name protocol nodePort",
    "api::core::v1::ServiceSpec": (
        "clusterIP type sessionAffinity loadBalancerIP externalName externalTrafficPolicy healthCheckNodePort "
        "publishNotReadyAddresses"
    ),
    "api::core::v1::StorageOsVolumeSource": "volumeName volumeNamespace fsType readOnly",
    "api::core::v1::TcpSocketAction": "host",
    "api::core::v1::Toleration": "key operator value effect",
    "api::core::v1::VolumeMount": "readOnly subPath subPathExpr",
    "api::core::v1::VolumeMountStatus": "readOnly",
    "api::core::v1::VsphereVirtualDiskVolumeSource": "fsType storagePolicyName storagePolicyID",
    "apimachinery::pkg::apis::meta::v1::Condition": "observedGeneration",
    "apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry": "manager operation apiVersion fieldsType subresource",
    "apimachinery::pkg::apis::meta::v1::ObjectMeta": (
        "name generateName namespace selfLink uid resourceVersion generation"
    ),
}

SCALARS = {"string": "String", "bool": "Bool", "int32": "Int32", "int64": "Int64", "double": "Double"}
MAPS = {"string, string": "MapString", "string, bytes": "MapBytes", "string, message": "MapMessage"}


def default_k8s_pb_dir():
    home = os.path.expanduser("~")
    found = sorted(glob.glob(os.path.join(home, ".cargo/registry/src/*/k8s-pb-0.9.0/src")))
    return found[0] if found else None


def default_openapi_dirs():
    home = os.path.expanduser("~")
    found = sorted(glob.glob(os.path.join(home, ".cargo/registry/src/*/k8s-openapi-0.29.0/src/v1_*")))
    return list(reversed(found))


def split_type_end(text, start):
    """Index of the `,` ending the field type that starts at `start` (angle brackets nest)."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "," and depth == 0:
            return i
    raise ValueError("unterminated field type")


FIELD_RE = re.compile(r"#\[prost\((?P<attr>[^\]]*?)\)\]\s*pub\s+(?P<name>(?:r#)?\w+)\s*:", re.S)
STRUCT_RE = re.compile(r"^pub struct (\w+) \{\n(.*?)^\}", re.S | re.M)


def parse_crate(src):
    """{rust path: [(tag, snake name, attr, type)]} for every prost message in the crate."""
    messages = {}
    for path in glob.glob(os.path.join(src, "**", "mod.rs"), recursive=True):
        module = os.path.relpath(os.path.dirname(path), src).replace(os.sep, "::")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for struct in STRUCT_RE.finditer(text):
            body = struct.group(2)
            fields = []
            for m in FIELD_RE.finditer(body):
                end = split_type_end(body, m.end())
                ty = " ".join(body[m.end() : end].split())
                attr = " ".join(m.group("attr").split())
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                fields.append((tag, m.group("name").removeprefix("r#"), attr, ty))
            messages[f"{module}::{struct.group(1)}"] = sorted(fields)
    return messages


def resolve(module, ty):
    """Rust path of the message type named by a field type written inside `module`."""
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        while ty.startswith(wrapper):
            ty = ty[len(wrapper) : -1].strip().rstrip(",").strip()
    if "BTreeMap<" in ty:
        ty = ty[ty.index("<") + 1 : -1]
        ty = ty[split_type_end(ty, 0) + 1 :].strip().rstrip(",").strip()
    ty = ty.replace(" ", "")
    if ty.startswith("crate::"):
        return ty[len("crate::") :]
    parts = module.split("::")
    segs = ty.split("::")
    while segs and segs[0] == "super":
        parts.pop()
        segs.pop(0)
    return "::".join(parts + segs)


def camel(snake):
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


# Per-message JSON names that break the general rule (Go field without a lower-case json tag).
MESSAGE_JSON_NAMES = {
    ("api::core::v1::DaemonEndpoint", "port"): "Port",
}


def json_name(snake):
    return JSON_NAME_OVERRIDES.get(snake, camel(snake))


def field_kind(attr):
    """(kind, repeated, is_message) from a prost attribute."""
    m = re.match(r'btree_map = "([^"]+)"', attr)
    if m:
        return MAPS[m.group(1)], False, m.group(1).endswith("message")
    first = attr.split(",")[0].strip()
    repeated = " repeated" in attr or attr.startswith("repeated")
    if first.startswith("bytes"):
        return "Bytes", repeated, False
    if first == "message":
        return "Message", repeated, True
    if first in SCALARS:
        return SCALARS[first], repeated, False
    raise ValueError(f"unsupported prost attribute {attr!r}")


def static_name(path, names):
    parts = path.split("::")
    struct = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", parts[-1]).upper()
    return "_".join(p.upper() for p in parts[-3:-1]) + "_" + struct


def reachable(messages):
    order, seen, stack = [], set(), [p for _, _, p in ROOTS]
    while stack:
        path = stack.pop(0)
        if path in seen:
            continue
        if path not in messages:
            raise SystemExit(f"message {path} not found in k8s-pb")
        seen.add(path)
        order.append(path)
        if path in SPECIAL:
            continue
        module = path.rsplit("::", 1)[0]
        for _, _, attr, ty in messages[path]:
            if field_kind(attr)[2]:
                stack.append(resolve(module, ty))
    return order


def build(messages):
    """[(rust path, static name, special, [(tag, json, kind, target or None, repeated, inline, snake, omit zero)])]."""
    order = reachable(messages)
    names = {}
    for path in order:
        name = static_name(path, names)
        if name in names.values():
            raise SystemExit(f"static name collision for {path}: {name}")
        names[path] = name
    omit_zero = {path: set(listed.split()) for path, listed in OMIT_ZERO.items()}
    for path, listed in omit_zero.items():
        known = {json_name(f[1]) for f in messages.get(path, [])}
        if not listed <= known:
            raise SystemExit(f"OMIT_ZERO names unknown fields of {path}: {sorted(listed - known)}")
    out = []
    for path in order:
        module = path.rsplit("::", 1)[0]
        fields = []
        if path not in SPECIAL:
            for tag, snake, attr, ty in messages[path]:
                kind, repeated, is_message = field_kind(attr)
                target = resolve(module, ty) if is_message else None
                inline = (path, snake) in INLINE_FIELDS
                json = MESSAGE_JSON_NAMES.get((path, snake)) or json_name(snake)
                omit = json in omit_zero.get(path, ())
                if omit and (repeated or target is not None or kind.startswith("Map")):
                    raise SystemExit(f"OMIT_ZERO names {path}.{json}, which is not a singular scalar")
                fields.append((tag, json, kind, target, repeated, inline, snake, omit))
        out.append((path, names[path], SPECIAL.get(path), fields))
    for path, field in INLINE_FIELDS:
        if path not in names:
            continue
        if not any(f[6] == field for f in out[order.index(path)][3]):
            raise SystemExit(f"INLINE_FIELDS names {path}.{field}, which does not exist")
    return out, names


def render(table, names):
    lines = [
        "//! Protobuf descriptor tables for the Kubernetes messages `crate::protobuf` decodes: @generated by",
        "//! `api-types/gen/protobuf_schema.py` from the prost sources of `k8s-pb` 0.9.0. Do not edit by hand; regenerate",
        "//! from the workspace root with `python3 api-types/gen/protobuf_schema.py` (formats with rustfmt, see the script).",
        f"//! {len(table)} messages, reachable from {len(ROOTS)} root kinds.",
        "",
        "use crate::protobuf::{Field, Kind, Message, Special};",
        "",
        "/// (apiVersion, kind, message) of the top-level objects a `runtime.Unknown` envelope may carry.",
        "pub(crate) static ROOTS: &[(&str, &str, &Message)] = &[",
    ]
    for api_version, kind, path in ROOTS:
        lines.append(f'    ("{api_version}", "{kind}", &{names[path]}),')
    lines.append("];")
    for path, name, special, fields in table:
        lines.append("")
        lines.append(f"pub(crate) static {name}: Message = Message {{")
        lines.append(f'    name: "{path}",')
        lines.append(f"    special: Special::{special or 'None'},")
        if not fields:
            lines.append("    fields: &[],")
        else:
            lines.append("    fields: &[")
            for tag, json, kind, target, repeated, inline, _, omit in fields:
                if inline:
                    kind_expr = f"Kind::Inline(&{names[target]})"
                elif target is not None:
                    kind_expr = f"Kind::{kind}(&{names[target]})"
                else:
                    kind_expr = f"Kind::{kind}"
                ctor = "Field::repeated" if repeated else "Field::omitempty" if omit else "Field::new"
                lines.append(f'        {ctor}({tag}, "{json}", {kind_expr}),')
            lines.append("    ],")
        lines.append("};")
    return "\n".join(lines) + "\n"


def load_openapi(dirs):
    """{definition name lower-cased ('api::core::v1::pod'): set of JSON names} from the k8s-openapi sources."""
    defs = {}
    for d in dirs:
        for path in glob.glob(os.path.join(d, "**", "*.rs"), recursive=True):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            m = re.match(r"// Generated from definition io\.k8s\.([\w.]+)", text)
            if not m:
                continue
            key = m.group(1).replace(".", "::").replace("api_extensions", "apiextensions").lower()
            names = set(re.findall(r'"([^"]+)" => Field::Key_', text))
            defs.setdefault(key, set()).update(names)
    return defs


def verify(table, dirs):
    defs = load_openapi(dirs)
    if not defs:
        raise SystemExit("no k8s-openapi sources found for --verify-openapi")
    by_path = {path: fields for path, _, _, fields in table}

    def emitted(fields):
        names = set()
        for _, json, _, target, _, inline, *_ in fields:
            names.update(emitted(by_path[target]) if inline else {json})
        return names

    inlined = {target for _, _, _, fields in table for _, _, _, target, _, inline, *_ in fields if inline}
    problems, notes, checked = [], [], 0
    for path, _, special, fields in table:
        if special:
            continue
        known = defs.get(path.lower())
        if known is None:
            if path in inlined:  # no definition of its own upstream: its names are checked as its parent's
                continue
            notes.append(f"{path} is not in k8s-openapi (inlined, or not an OpenAPI definition): unverified")
            continue
        for _, json, _, target, _, inline, snake, _ in fields:
            if inline and json in known:
                problems.append(f"{path}.{snake}: marked inline but upstream has a field {json!r}")
            names = emitted(by_path[target]) if inline else {json}
            for name in sorted(names):
                checked += 1
                if name not in known:
                    guess = [k for k in known if k.lower() == name.lower()]
                    problems.append(f"{path}.{snake}: generated {name!r}, upstream has {guess or 'no such field'}")
        for name in sorted(known - emitted(fields) - {"apiVersion", "kind"}):
            notes.append(f"{path}: upstream field {name!r} is not in k8s-pb 0.9.0 (newer Kubernetes?)")
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    for p in problems:
        print(f"MISMATCH {p}", file=sys.stderr)
    print(f"verified {checked} field names against k8s-openapi", file=sys.stderr)
    if problems:
        raise SystemExit(1)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k8s-pb", default=default_k8s_pb_dir(), help="the k8s-pb 0.9.0 `src` directory")
    parser.add_argument("--out", default=os.path.join(here, "..", "src", "protobuf_schema.rs"))
    parser.add_argument(
        "--verify-openapi",
        nargs="*",
        metavar="DIR",
        help="check JSON names against k8s-openapi 0.29 `src/v1_*` directories (default: all found in ~/.cargo)",
    )
    args = parser.parse_args()
    if not args.k8s_pb or not os.path.isdir(args.k8s_pb):
        raise SystemExit("k8s-pb 0.9.0 sources not found; run `cargo fetch` or pass --k8s-pb DIR")
    messages = parse_crate(args.k8s_pb)
    table, names = build(messages)
    if args.verify_openapi is not None:
        verify(table, args.verify_openapi or default_openapi_dirs())
    out = os.path.normpath(args.out)
    with open(out, "w", encoding="utf-8") as f:
        f.write(render(table, names))
    rustfmt = shutil.which("rustfmt")
    if rustfmt:
        subprocess.run([rustfmt, "--edition", "2024", out], check=True)
    else:
        print(f"rustfmt not found: run `rustfmt --edition 2024 {out}`", file=sys.stderr)
    print(f"wrote {out}: {len(table)} messages", file=sys.stderr)


if __name__ == "__main__":
    main()

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

# Root kinds: every kind of the resource table (`api-types/src/resources.rs`, read by `table_roots`), its list kind
# when the resource is stored, the kinds of subresource bodies, and these. `DeleteOptions` is accepted with any
# apiVersion (upstream registers it in every group version); the decoder special-cases that kind.
EXTRA_ROOTS = [
    ("meta.k8s.io/v1", "DeleteOptions", "apimachinery::pkg::apis::meta::v1::DeleteOptions"),
    ("meta.k8s.io/v1", "Status", "apimachinery::pkg::apis::meta::v1::Status"),
    ("meta.k8s.io/v1", "WatchEvent", "apimachinery::pkg::apis::meta::v1::WatchEvent"),
    ("meta.k8s.io/v1", "PartialObjectMetadata", "apimachinery::pkg::apis::meta::v1::PartialObjectMetadata"),
    ("meta.k8s.io/v1", "PartialObjectMetadataList", "apimachinery::pkg::apis::meta::v1::PartialObjectMetadataList"),
    ("v1", "Status", "apimachinery::pkg::apis::meta::v1::Status"),
]

# Kinds of the table without a protobuf message upstream (served as JSON only).
NO_PROTOBUF = set()


def group_module(group):
    """The k8s-pb module of an API group: `apps` -> `api::apps`, `` -> `api::core`."""
    if group == "":
        return "api::core"
    if group == "apiextensions.k8s.io":
        return "apiextensions_apiserver::pkg::apis::apiextensions"
    if group == "apiregistration.k8s.io":
        return "kube_aggregator::pkg::apis::apiregistration"
    if group == "meta.k8s.io":
        return "apimachinery::pkg::apis::meta"
    return "api::" + group.split(".")[0]


RES_RE = re.compile(r'res!\("([^"]*)", "([^"]*)", "([^"]*)", "[^"]*", "[^"]*", \w+,.*?storage: "([^"]*)"\)', re.S)
SUB_RE = re.compile(r'Subresource \{ name: "[^"]*", kind: "([^"]*)", group: "([^"]*)", version: "([^"]*)"')
SCALE_RE = re.compile(r'const fn scale\(\) -> Subresource \{\s*Subresource \{ name: "scale", kind: "(\w+)", group: "([^"]*)", version: "([^"]*)"')


def table_roots(resources_rs, messages):
    """(apiVersion, kind, k8s-pb path) for every kind, list kind and subresource body kind of the resource table."""
    with open(resources_rs, encoding="utf-8") as f:
        text = f.read()
    text = text[text.index("pub static RESOURCES"):]
    roots = []

    def add(group, version, kind):
        api_version = f"{group}/{version}" if group else version
        path = f"{group_module(group)}::{version}::{kind}"
        if path not in messages:
            if kind.endswith("Options") or kind.endswith("List") or kind in NO_PROTOBUF:
                return
            raise SystemExit(f"no k8s-pb message {path} for {api_version} {kind}")
        if (api_version, kind, path) not in roots:
            roots.append((api_version, kind, path))

    scale = SCALE_RE.search(open(resources_rs, encoding="utf-8").read())
    for m in RES_RE.finditer(text):
        group, version, kind, storage = m.groups()
        add(group, version, kind)
        if storage:
            add(group, version, kind + "List")
        body = m.group(0)
        for sm in SUB_RE.finditer(body):
            skind, sgroup, sversion = sm.groups()
            add(sgroup or group, sversion or version, skind)
        if "scale()" in body:
            add(scale.group(2), scale.group(3), scale.group(1))
    return roots


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
    "api::certificates::v1::ExtraValue": "StringList",
    # apiextensions' `JSON` (raw JSON bytes) and the JSON-schema unions with a JSON form of their own.
    "apiextensions_apiserver::pkg::apis::apiextensions::v1::Json": "FieldsV1",
    "apiextensions_apiserver::pkg::apis::apiextensions::v1::JsonSchemaPropsOrArray": "SchemaOrArray",
    "apiextensions_apiserver::pkg::apis::apiextensions::v1::JsonSchemaPropsOrBool": "SchemaOrBool",
    "apiextensions_apiserver::pkg::apis::apiextensions::v1::JsonSchemaPropsOrStringArray": "SchemaOrStringArray",
}

# Special messages whose fields are still emitted (their JSON form is built from the decoded fields, by tag).
SPECIAL_WITH_FIELDS = {"SchemaOrArray", "SchemaOrBool", "SchemaOrStringArray"}

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

# Go sources of the API types (`types.go` and friends): the source of truth for each field's JSON name, whether it is
# embedded with `json:",inline"`, and whether it is a non-pointer `omitempty` scalar. Go clients write every
# non-pointer field to the wire (the gogo marshaller writes zero values too), and upstream's JSON encoding drops the
# zero value of a non-pointer `omitempty` field, so the decoder drops a zero ("", false, 0) found on the wire for
# those (`Field::omitempty`); every other scalar (a Go pointer such as `replicas`, or a field without `omitempty` such
# as `containerPort`) keeps a zero that is on the wire. Each directory is given with the k8s-pb module it maps to.
GO_SOURCES = [
    ("k8s-api", "api"),  # github.com/kubernetes/api at v0.33.x
    ("apimachinery", "apimachinery"),  # github.com/kubernetes/apimachinery at v0.33.x
    ("apiextensions", "apiextensions_apiserver"),  # github.com/kubernetes/apiextensions-apiserver at v0.33.x
    ("kube-aggregator", "kube_aggregator"),  # github.com/kubernetes/kube-aggregator at v0.33.x
]

GO_STRUCT_RE = re.compile(r"^type (\w+) struct \{\n(.*?)^\}", re.S | re.M)
GO_FIELD_RE = re.compile(r"^\s*(?:(\w+)\s+)?(\S+)\s+`([^`]*)`", re.M)


def parse_go(dirs):
    """{lower-cased k8s-pb path of a message: {tag: (json name, inline, omit zero if scalar)}} from Go sources."""
    out = {}
    for root, prefix in dirs:
        for path in glob.glob(os.path.join(root, "**", "*.go"), recursive=True):
            base = os.path.basename(path)
            if base.endswith("_test.go") or base.startswith("zz_") or base.startswith("generated"):
                continue
            rel = os.path.relpath(os.path.dirname(path), root)
            module = prefix + "::" + rel.replace(os.sep, "::")
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for struct in GO_STRUCT_RE.finditer(text):
                fields = {}
                for m in GO_FIELD_RE.finditer(struct.group(2)):
                    _, ty, tag = m.groups()
                    pb = re.search(r'protobuf:"[^,"]+,(\d+),', tag)
                    js = re.search(r'json:"([^"]*)"', tag)
                    if not pb or not js:
                        continue
                    opts = js.group(1).split(",")
                    inline = "inline" in opts[1:]
                    omit = "omitempty" in opts[1:] and not ty.startswith("*")
                    fields[int(pb.group(1))] = (opts[0], inline, omit)
                out[f"{module}::{struct.group(1)}".lower()] = fields
    return out


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
STRUCT_RE = re.compile(r"^pub struct (\w+) \{(?:\}|\n(.*?)^\})", re.S | re.M)


def parse_crate(src):
    """{rust path: [(tag, snake name, attr, type)]} for every prost message in the crate."""
    messages = {}
    for path in glob.glob(os.path.join(src, "**", "mod.rs"), recursive=True):
        module = os.path.relpath(os.path.dirname(path), src).replace(os.sep, "::")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for struct in STRUCT_RE.finditer(text):
            body = struct.group(2) or ""
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


def reachable(messages, roots):
    order, seen, stack = [], set(), [p for _, _, p in roots]
    while stack:
        path = stack.pop(0)
        if path in seen:
            continue
        if path not in messages:
            raise SystemExit(f"message {path} not found in k8s-pb")
        seen.add(path)
        order.append(path)
        if SPECIAL.get(path, "SchemaOrArray") not in SPECIAL_WITH_FIELDS:
            continue
        module = path.rsplit("::", 1)[0]
        for _, _, attr, ty in messages[path]:
            if field_kind(attr)[2]:
                stack.append(resolve(module, ty))
    return order


def build(messages, roots, go):
    """[(rust path, static name, special, [(tag, json, kind, target or None, repeated, inline, snake, omit zero)])]."""
    order = reachable(messages, roots)
    names = {}
    for path in order:
        name = static_name(path, names)
        if name in names.values():
            raise SystemExit(f"static name collision for {path}: {name}")
        names[path] = name
    out, missing = [], []
    for path in order:
        module = path.rsplit("::", 1)[0]
        fields = []
        if SPECIAL.get(path, "SchemaOrArray") in SPECIAL_WITH_FIELDS:
            go_fields = go.get(path.lower())
            if go_fields is None:
                missing.append(path)
                go_fields = {}
            for tag, snake, attr, ty in messages[path]:
                kind, repeated, is_message = field_kind(attr)
                target = resolve(module, ty) if is_message else None
                go_json, inline, omit = go_fields.get(tag, (None, False, False))
                json = go_json or MESSAGE_JSON_NAMES.get((path, snake)) or json_name(snake)
                if inline:
                    json = snake
                omit = omit and not repeated and target is None and not kind.startswith("Map")
                fields.append((tag, json, kind, target, repeated, inline, snake, omit))
        out.append((path, names[path], SPECIAL.get(path), fields))
    for path in missing:
        print(f"note: no Go struct for {path}: JSON names guessed, zero values kept", file=sys.stderr)
    return out, names


def render(table, names, roots):
    lines = [
        "//! Protobuf descriptor tables for the Kubernetes messages `crate::protobuf` decodes: @generated by",
        "//! `api-types/gen/protobuf_schema.py` from the prost sources of `k8s-pb` 0.9.0. Do not edit by hand; regenerate",
        "//! from the workspace root with `python3 api-types/gen/protobuf_schema.py` (formats with rustfmt, see the script).",
        f"//! {len(table)} messages, reachable from {len(roots)} root kinds.",
        "",
        "use crate::protobuf::{Field, Kind, Message, Special};",
        "",
        "/// (apiVersion, kind, message) of the top-level objects a `runtime.Unknown` envelope may carry.",
        "pub(crate) static ROOTS: &[(&str, &str, &Message)] = &[",
    ]
    for api_version, kind, path in roots:
        lines.append(f'    ("{api_version}", "{kind}", &{names[path]}),')
    lines.append("];")
    for path, name, special, fields in table:
        lines.append("")
        # `Message::new` is a const fn: it also builds the message's field index when the tables compile.
        lines.append(f"pub(crate) static {name}: Message = Message::new(")
        lines.append(f'    "{path}",')
        lines.append(f"    Special::{special or 'None'},")
        if not fields:
            lines.append("    &[],")
        else:
            lines.append("    &[")
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
        lines.append(");")
    return "\n".join(lines) + "\n"


def render_kinds(roots):
    """The round-trip tests' oracle: each root kind re-encoded through its k8s-pb (prost) type."""
    lines = [
        "//! @generated by `api-types/gen/protobuf_schema.py`: every root kind of `protobuf_schema.rs` with a function",
        "//! that decodes the kind's message with its `k8s-pb` type and encodes it again (the round-trip tests' oracle).",
        "",
        "use prost::Message;",
        "",
        "pub(super) type ReEncode = fn(&[u8]) -> Result<Vec<u8>, prost::DecodeError>;",
        "",
        "pub(super) static KINDS: &[(&str, &str, ReEncode)] = &[",
    ]
    seen = set()
    for api_version, kind, path in roots:
        if (api_version, kind) in seen:
            continue
        seen.add((api_version, kind))
        lines.append(f'    ("{api_version}", "{kind}", |b| k8s_pb::{path}::decode(b).map(|m| m.encode_to_vec())),')
    lines.append("];")
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
    for opt, prefix in GO_SOURCES:
        parser.add_argument(f"--{opt}", help=f"checkout of the Go module the k8s-pb `{prefix}` tree comes from")
    args = parser.parse_args()
    if not args.k8s_pb or not os.path.isdir(args.k8s_pb):
        raise SystemExit("k8s-pb 0.9.0 sources not found; run `cargo fetch` or pass --k8s-pb DIR")
    messages = parse_crate(args.k8s_pb)
    roots = table_roots(os.path.join(here, "..", "src", "resources.rs"), messages) + EXTRA_ROOTS
    dirs = [(getattr(args, opt.replace("-", "_")), prefix) for opt, prefix in GO_SOURCES]
    for d, prefix in dirs:
        if not d or not os.path.isdir(d):
            raise SystemExit(
                f"Go sources for {prefix} not found: pass --k8s-api, --apimachinery, --apiextensions and "
                "--kube-aggregator"
            )
    go = parse_go(dirs)
    table, names = build(messages, roots, go)
    if args.verify_openapi is not None:
        verify(table, args.verify_openapi or default_openapi_dirs())
    out = os.path.normpath(args.out)
    with open(out, "w", encoding="utf-8") as f:
        f.write(render(table, names, roots))
    kinds = os.path.join(os.path.dirname(out), "protobuf", "k8s_pb_kinds.rs")
    with open(kinds, "w", encoding="utf-8") as f:
        f.write(render_kinds(roots))
    rustfmt = shutil.which("rustfmt")
    for path in (out, kinds):
        if rustfmt:
            subprocess.run([rustfmt, "--edition", "2024", path], check=True)
        else:
            print(f"rustfmt not found: run `rustfmt --edition 2024 {path}`", file=sys.stderr)
    print(f"wrote {out}: {len(table)} messages", file=sys.stderr)


if __name__ == "__main__":
    main()

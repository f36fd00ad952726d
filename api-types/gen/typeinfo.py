#!/usr/bin/env python3
"""Generates `api-types/src/typeinfo.rs`: the list, map and struct types server-side apply merges built-in kinds by.

The generated file is committed; nothing runs this at build time. Regenerate by hand from the workspace root:

    python3 api-types/gen/typeinfo.py

Input: the Go sources of `k8s.io/api`, `k8s.io/apimachinery` and `k8s.io/apiextensions-apiserver`, read from git
directories without a work tree (default: the mirrors under `/work/.mirror/`; override with `--api`,
`--apimachinery`, `--apiextensions`, each a git dir read at HEAD). Python 3 standard library only; the output is
formatted with `rustfmt --edition 2024` when rustfmt is on the PATH.

What is read, as kube-openapi's generator and `schemaconv` (pkg/schemaconv/smd.go) turn it into structured-merge-diff
schemas:
- struct fields with their `json` name; `json:",inline"` embedded structs have their fields merged into the parent;
- `// +listType=atomic|set|map` with `// +listMapKey=k` markers (also the `+k8s:` spelling); where there is no
  listType, the `patchStrategy:"merge"` tag makes a list a map keyed by `patchMergeKey` (a set for scalar
  elements), and any other list is atomic;
- `// +mapType=atomic|granular` and `// +structType=atomic|granular`, on the field or on the type;
- well-known scalars (Time, MicroTime, Duration, Quantity, IntOrString, named strings and numbers) and untyped
  values (RawExtension, apiextensions JSON), merged by deduction as upstream's `__untyped_deduced_`;
- `default`: the `+default=` marker's JSON value (map-list keys missing from an item take it, as upstream's
  structured-merge-diff does for `protocol: TCP` of ports);
- `zero`: how the field appears in the Go zero value of its struct: `Object` for a non-pointer struct (Go always
  encodes it, `omitempty` does not apply to structs), `Null` for any other field without `omitempty`, else `Absent`.
  Upstream's field manager diffs a create against the zero value, so these paths are never "added".

Roots: every kind of `api-types/src/resources.rs` (and Scale) whose Go type is found.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SCALAR_TYPES = {
    "string", "bool", "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64",
    "float32", "float64", "byte", "rune",
}
# Types upstream's OpenAPI declares as strings or numbers whatever their Go shape.
WELL_KNOWN_SCALARS = {
    ("k8s.io/apimachinery/pkg/apis/meta/v1", "Time"),
    ("k8s.io/apimachinery/pkg/apis/meta/v1", "MicroTime"),
    ("k8s.io/apimachinery/pkg/apis/meta/v1", "Duration"),
    ("k8s.io/apimachinery/pkg/api/resource", "Quantity"),
    ("k8s.io/apimachinery/pkg/util/intstr", "IntOrString"),
    ("k8s.io/apimachinery/pkg/types", "UID"),
    ("k8s.io/apimachinery/pkg/types", "NodeName"),
}
WELL_KNOWN_UNTYPED = {
    ("k8s.io/apimachinery/pkg/runtime", "RawExtension"),
    ("k8s.io/apimachinery/pkg/runtime", "Object"),
    ("k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1", "JSON"),
    ("k8s.io/apimachinery/pkg/apis/meta/v1", "FieldsV1"),
}

# Where each Go package lives: (import path prefix, git dir option, path inside the repository).
REPOS = [
    ("k8s.io/api/", "api", ""),
    ("k8s.io/apimachinery/", "apimachinery", ""),
    ("k8s.io/apiextensions-apiserver/", "apiextensions", ""),
]


def git_show(gitdir, path):
    return subprocess.run(
        ["git", "--git-dir", gitdir, "show", f"HEAD:{path}"], capture_output=True, text=True, check=True
    ).stdout


def git_ls(gitdir, path):
    out = subprocess.run(
        ["git", "--git-dir", gitdir, "ls-tree", "--name-only", f"HEAD:{path}"], capture_output=True, text=True
    )
    return out.stdout.split() if out.returncode == 0 else []


class Package:
    """The struct and named types of one Go package."""

    def __init__(self, path):
        self.path = path
        self.structs = {}  # name -> (fields, markers)
        self.named = {}  # name -> Go type expression (type X string, type X []Y, type X map[string]Y)
        self.type_markers = {}
        self.imports = {}


def parse_package(gitdir, prefix_path, import_path):
    pkg = Package(import_path)
    for name in git_ls(gitdir, prefix_path):
        if not name.endswith(".go") or name.endswith("_test.go") or name.startswith("zz_generated") or name.startswith("generated"):
            continue
        parse_file(pkg, git_show(gitdir, f"{prefix_path}/{name}" if prefix_path else name))
    return pkg


IMPORT_RE = re.compile(r'^\s*(?:([A-Za-z_][A-Za-z0-9_]*)\s+)?"([^"]+)"')


def parse_file(pkg, src):
    lines = src.split("\n")
    imports = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("import ("):
            i += 1
            while i < len(lines) and not lines[i].startswith(")"):
                m = IMPORT_RE.match(lines[i])
                if m:
                    alias = m.group(1) or m.group(2).rsplit("/", 1)[-1]
                    imports[alias] = m.group(2)
                i += 1
        elif line.startswith("import "):
            m = IMPORT_RE.match(line[len("import "):])
            if m:
                imports[m.group(1) or m.group(2).rsplit("/", 1)[-1]] = m.group(2)
        i += 1
    comments = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("//"):
            comments.append(stripped)
            i += 1
            continue
        m = re.match(r"^type\s+([A-Za-z0-9_]+)\s+struct\s*{\s*$", line)
        if m:
            name = m.group(1)
            pkg.type_markers[name] = markers(comments)
            fields = []
            fcomments = []
            i += 1
            depth = 1
            while i < len(lines) and depth > 0:
                fl = lines[i].strip()
                if fl.startswith("}") and depth == 1:
                    break
                if fl.startswith("//"):
                    fcomments.append(fl)
                elif fl:
                    f = parse_field(fl, fcomments)
                    if f:
                        fields.append(f)
                    fcomments = []
                else:
                    fcomments = []
                i += 1
            pkg.structs[name] = fields
            pkg.imports[name] = imports
            comments = []
            i += 1
            continue
        m = re.match(r"^type\s+([A-Za-z0-9_]+)\s+([^{=]+?)\s*(//.*)?$", line)
        if m and not m.group(2).startswith("interface") and not m.group(2).startswith("func"):
            pkg.named[m.group(1)] = m.group(2).strip()
            pkg.type_markers[m.group(1)] = markers(comments)
            pkg.imports[m.group(1)] = imports
        comments = []
        i += 1


def markers(comments):
    out = {"listMapKey": []}
    for c in comments:
        m = re.match(r"^//\s*\+(?:k8s:)?(listType|listMapKey|mapType|structType|patchStrategy|patchMergeKey|default)=(\S+)", c)
        if not m:
            continue
        if m.group(1) == "listMapKey":
            if m.group(2) not in out["listMapKey"]:
                out["listMapKey"].append(m.group(2))
        else:
            out[m.group(1)] = m.group(2)
    return out


def parse_field(line, comments):
    if "`" not in line:
        return None
    head, tags = line.split("`", 1)[0].split(), line.split("`")[1]
    if len(head) == 1:
        gname, gotype = None, head[0]
    elif len(head) >= 2:
        gname, gotype = head[0], " ".join(head[1:])
    else:
        return None
    tag = dict(re.findall(r'(\w+):"([^"]*)"', tags))
    js = tag.get("json")
    if js is None or js == "-":
        return None
    jname = js.split(",")[0]
    inline = "inline" in js.split(",")[1:]
    mk = markers(comments)
    if "patchStrategy" in tag:
        mk.setdefault("patchStrategy", tag["patchStrategy"])
    if "patchMergeKey" in tag:
        mk.setdefault("patchMergeKey", tag["patchMergeKey"])
    omitempty = "omitempty" in js.split(",")[1:] or "omitzero" in js.split(",")[1:]
    return {"json": jname, "type": gotype, "inline": inline or (not jname), "markers": mk, "omitempty": omitempty}


class Generator:
    def __init__(self, gitdirs):
        self.gitdirs = gitdirs
        self.packages = {}
        self.nodes = [("scalar",), ("untyped",)]
        self.node_index = {("scalar",): 0, ("untyped",): 1}
        self.struct_ids = {}

    def package(self, import_path):
        if import_path not in self.packages:
            pkg = None
            for prefix, key, _ in REPOS:
                if import_path.startswith(prefix):
                    rel = import_path[len(prefix):]
                    pkg = parse_package(self.gitdirs[key], rel, import_path)
            self.packages[import_path] = pkg or Package(import_path)
        return self.packages[import_path]

    def node(self, key):
        if key not in self.node_index:
            self.node_index[key] = len(self.nodes)
            self.nodes.append(key)
        return self.node_index[key]

    def resolve(self, pkg, name, goexpr):
        """Import path and type name of `goexpr` written in `pkg` (in the file of type `name`)."""
        if "." in goexpr:
            alias, tname = goexpr.split(".", 1)
            return pkg.imports.get(name, {}).get(alias, alias), tname
        return pkg.path, goexpr

    def type_of(self, pkg, owner, goexpr, mk):
        """The node index of a Go type expression with the field's markers."""
        goexpr = goexpr.strip()
        if goexpr.startswith("*"):
            return self.type_of(pkg, owner, goexpr[1:], mk)
        if goexpr == "[]byte":
            return 0
        if goexpr.startswith("[]"):
            elem = self.type_of(pkg, owner, goexpr[2:], {"listMapKey": []})
            return self.node(("list", elem) + self.list_kind(elem, mk))
        if goexpr.startswith("map["):
            depth, j = 0, 3
            for j in range(3, len(goexpr)):
                if goexpr[j] == "[":
                    depth += 1
                elif goexpr[j] == "]":
                    depth -= 1
                    if depth == 0:
                        break
            elem = self.type_of(pkg, owner, goexpr[j + 1 :], {"listMapKey": []})
            return self.node(("map", elem, mk.get("mapType") == "atomic"))
        if goexpr in SCALAR_TYPES:
            return 0
        if goexpr in ("interface{}", "any"):
            return 1
        ipath, tname = self.resolve(pkg, owner, goexpr)
        if (ipath, tname) in WELL_KNOWN_SCALARS:
            return 0
        if (ipath, tname) in WELL_KNOWN_UNTYPED:
            return 1
        return self.named(ipath, tname, mk)

    def named(self, ipath, tname, mk):
        tpkg = self.package(ipath)
        if tname in tpkg.structs:
            atomic = mk.get("structType", tpkg.type_markers.get(tname, {}).get("structType")) == "atomic"
            return self.struct(tpkg, tname, atomic)
        if tname in tpkg.named:
            inner = dict(tpkg.type_markers.get(tname, {}))
            for k, v in mk.items():
                if v:
                    inner[k] = v
            return self.type_of(tpkg, tname, tpkg.named[tname], inner)
        return 1

    def struct(self, pkg, tname, atomic):
        key = (pkg.path, tname, atomic)
        if key in self.struct_ids:
            return self.struct_ids[key]
        idx = self.node(("struct", pkg.path, tname, atomic))
        self.struct_ids[key] = idx
        fields = {}
        self.collect_fields(pkg, tname, fields)
        self.nodes[idx] = ("struct", pkg.path, tname, atomic, tuple(sorted(fields.items())))
        return idx

    def collect_fields(self, pkg, tname, fields):
        for f in pkg.structs.get(tname, []):
            if f["inline"]:
                ipath, inner = self.resolve(pkg, tname, f["type"].lstrip("*"))
                ipkg = self.package(ipath)
                self.collect_fields(ipkg, inner, fields)
                continue
            ty = self.type_of(pkg, tname, f["type"], f["markers"])
            nonnull = self.is_value_struct(pkg, tname, f["type"])
            zero = "Object" if nonnull else ("Absent" if f["omitempty"] else "Null")
            fields[f["json"]] = (ty, zero, f["markers"].get("default"))

    def is_value_struct(self, pkg, owner, goexpr):
        if goexpr.startswith("*") or goexpr.startswith("[") or goexpr.startswith("map[") or goexpr in SCALAR_TYPES:
            return False
        ipath, tname = self.resolve(pkg, owner, goexpr)
        if (ipath, tname) in WELL_KNOWN_SCALARS or (ipath, tname) in WELL_KNOWN_UNTYPED:
            return False
        return tname in self.package(ipath).structs

    def list_kind(self, elem, mk):
        lt = mk.get("listType")
        if lt == "map":
            return ("map", tuple(mk.get("listMapKey", [])))
        if lt == "set":
            return ("set", ())
        if lt == "atomic":
            return ("atomic", ())
        if mk.get("patchStrategy", "").startswith("merge"):
            key = mk.get("patchMergeKey")
            if key and self.nodes[elem][0] == "struct":
                return ("map", (key,))
            if self.nodes[elem][0] == "scalar":
                return ("set", ())
        return ("atomic", ())


def table_roots():
    """(group, version, kind) of every row of `api-types/src/resources.rs`."""
    src = open(os.path.join(ROOT, "api-types/src/resources.rs")).read()
    rows = re.findall(r'res!\("([^"]*)",\s*"([^"]*)",\s*"([^"]*)"', src)
    rows.append(("autoscaling", "v1", "Scale"))
    return sorted(set(rows))


def group_package(gen, group, version):
    """The Go import path of a group version, found by the GroupName constants of k8s.io/api."""
    if group == "":
        return f"k8s.io/api/core/{version}"
    if group == "apiextensions.k8s.io":
        return f"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/{version}"
    for d in git_ls(gen.gitdirs["api"], ""):
        reg = git_ls(gen.gitdirs["api"], f"{d}/{version}")
        if "register.go" not in reg:
            continue
        src = git_show(gen.gitdirs["api"], f"{d}/{version}/register.go")
        m = re.search(r'GroupName\s*=\s*"([^"]+)"', src)
        if m and m.group(1) == group:
            return f"k8s.io/api/{d}/{version}"
    return None


def rust_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def emit(gen, roots):
    out = []
    out.append("// @generated by api-types/gen/typeinfo.py from k8s.io/api, k8s.io/apimachinery and")
    out.append("// k8s.io/apiextensions-apiserver. Do not edit by hand; regenerate with `python3 api-types/gen/typeinfo.py`.")
    out.append("")
    out.append("use super::{Field, ListKind, Node, Zero};")
    out.append("")
    out.append("/// Every type node; index 0 is a scalar, 1 an untyped (deduced) value.")
    out.append("pub static NODES: &[Node] = &[")
    for n in gen.nodes:
        if n[0] == "scalar":
            out.append("    Node::Scalar,")
        elif n[0] == "untyped":
            out.append("    Node::Untyped,")
        elif n[0] == "list":
            _, elem, kind, keys = n
            if kind == "map":
                lk = "ListKind::Map(&[" + ", ".join(rust_str(k) for k in keys) + "])"
            else:
                lk = {"set": "ListKind::Set", "atomic": "ListKind::Atomic"}[kind]
            out.append(f"    Node::List {{ elem: {elem}, kind: {lk} }},")
        elif n[0] == "map":
            out.append(f"    Node::Map {{ elem: {n[1]}, atomic: {'true' if n[2] else 'false'} }},")
        else:
            _, path, name, atomic, fields = n
            fs = ", ".join(
                f"Field {{ name: {rust_str(fname)}, ty: {ty}, zero: Zero::{zero}, "
                f"default: {('Some(' + rust_str(d) + ')') if d else 'None'} }}"
                for fname, (ty, zero, d) in fields
            )
            out.append(f"    // {path}.{name}")
            out.append(f"    Node::Struct {{ atomic: {'true' if atomic else 'false'}, fields: &[{fs}] }},")
    out.append("];")
    out.append("")
    out.append("/// (group, version, kind) -> the node of the kind's object, sorted.")
    out.append("pub static ROOTS: &[(&str, &str, &str, u32)] = &[")
    for (g, v, k, idx) in roots:
        out.append(f"    ({rust_str(g)}, {rust_str(v)}, {rust_str(k)}, {idx}),")
    out.append("];")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--api", default="/work/.mirror/kubernetes+api/repo")
    ap.add_argument("--apimachinery", default="/work/.mirror/kubernetes+apimachinery/repo")
    ap.add_argument("--apiextensions", default="/work/.mirror/kubernetes+apiextensions-apiserver/repo")
    ap.add_argument("--out", default=os.path.join(ROOT, "api-types/src/typeinfo/generated.rs"))
    args = ap.parse_args()
    gen = Generator({"api": args.api, "apimachinery": args.apimachinery, "apiextensions": args.apiextensions})
    roots = []
    for group, version, kind in table_roots():
        path = group_package(gen, group, version)
        if path is None:
            print(f"no Go package for {group}/{version}", file=sys.stderr)
            continue
        pkg = gen.package(path)
        if kind not in pkg.structs:
            print(f"no Go type for {group}/{version} {kind}", file=sys.stderr)
            continue
        roots.append((group, version, kind, gen.struct(pkg, kind, False)))
    with open(args.out, "w") as f:
        f.write(emit(gen, sorted(roots)))
    if shutil.which("rustfmt"):
        subprocess.run(["rustfmt", "--edition", "2024", args.out], check=False)
    print(f"{len(roots)} roots, {len(gen.nodes)} nodes -> {args.out}")


if __name__ == "__main__":
    main()

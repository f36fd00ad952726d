//! Impersonation (`Impersonate-User`, `-Group`, `-Uid`, `-Extra-<key>` headers), as upstream's
//! `WithImpersonation` filter: each requested attribute is authorized with the `impersonate` verb, then the request
//! runs as the impersonated user.

use std::collections::BTreeMap;

use api_types::ApiError;
use http::HeaderMap;

use super::UserInfo;
use crate::authorization::{Attributes, Chain, Decision, forbidden};

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// Percent-decodes an extra key (`Impersonate-Extra-Foo%2fbar`), as upstream's `unescapeExtraKey`.
fn unescape(key: &str) -> String {
    percent_decode(key).unwrap_or_else(|| key.to_string())
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether the request asks to impersonate anyone.
pub fn requested(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|k| k.as_str() == USER || k.as_str() == GROUP || k.as_str() == UID || k.as_str().starts_with(EXTRA_PREFIX))
}

/// The user the request runs as: `requestor` itself when nothing is impersonated, else the impersonated user once
/// every requested attribute has passed an `impersonate` check.
pub fn impersonate(requestor: &UserInfo, headers: &HeaderMap, authz: &Chain) -> Result<UserInfo, ApiError> {
    if !requested(headers) {
        return Ok(requestor.clone());
    }
    let values = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    };
    let username = values(USER).into_iter().next().unwrap_or_default();
    let groups = values(GROUP);
    let uid = values(UID).into_iter().next();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        if let Some(key) = k.as_str().strip_prefix(EXTRA_PREFIX)
            && let Ok(v) = v.to_str()
        {
            extra.entry(unescape(key)).or_default().push(v.to_string());
        }
    }
    if username.is_empty() {
        return Err(ApiError::internal(format!(
            "requested {} without impersonating a user",
            describe(&groups, &extra, uid.as_deref())
        )));
    }
    let check = |a: Attributes| -> Result<(), ApiError> {
        match authz.authorize(&a) {
            (Decision::Allow, _) => Ok(()),
            (_, reason) => Err(forbidden(&a, &reason)),
        }
    };
    let base = |group: &str, resource: &str, name: &str| Attributes {
        user: requestor.clone(),
        verb: "impersonate".into(),
        resource_request: true,
        api_group: group.into(),
        resource: resource.into(),
        name: name.into(),
        ..Default::default()
    };
    let sa = username.strip_prefix("system:serviceaccount:").and_then(|r| r.split_once(':'));
    let mut out_groups = Vec::new();
    match sa {
        Some((ns, name)) => {
            check(Attributes { namespace: ns.into(), ..base("", "serviceaccounts", name) })?;
            if groups.is_empty() {
                out_groups = vec!["system:serviceaccounts".to_string(), format!("system:serviceaccounts:{ns}")];
            }
        }
        None => check(base("", "users", &username))?,
    }
    for g in &groups {
        check(base("", "groups", g))?;
        out_groups.push(g.clone());
    }
    for (k, vs) in &extra {
        for v in vs {
            check(Attributes { subresource: k.clone(), ..base("authentication.k8s.io", "userextras", v) })?;
        }
    }
    if let Some(u) = &uid {
        check(base("authentication.k8s.io", "uids", u))?;
    }
    if username == "system:anonymous" {
        if !out_groups.iter().any(|g| g == "system:unauthenticated") {
            out_groups.push("system:unauthenticated".into());
        }
    } else if !out_groups.iter().any(|g| g == "system:authenticated" || g == "system:unauthenticated") {
        out_groups.push("system:authenticated".into());
    }
    Ok(UserInfo { username, uid: uid.unwrap_or_default(), groups: out_groups, extra })
}

fn describe(groups: &[String], extra: &BTreeMap<String, Vec<String>>, uid: Option<&str>) -> String {
    let mut parts: Vec<String> = groups.iter().map(|g| format!("Group={g}")).collect();
    parts.extend(extra.iter().map(|(k, v)| format!("Extra[{k}]={}", v.join(","))));
    parts.extend(uid.map(|u| format!("UID={u}")));
    format!("[{}]", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorization::{Authorizer, NonResourceRule, ResourceRule};
    use std::sync::Arc;

    /// Allows `impersonate` of exactly the listed (resource, name) pairs.
    struct Allow(Vec<(&'static str, &'static str)>);
    impl Authorizer for Allow {
        fn authorize(&self, a: &Attributes) -> (Decision, String) {
            let ok = a.verb == "impersonate" && self.0.iter().any(|(r, n)| *r == a.resource && *n == a.name);
            (if ok { Decision::Allow } else { Decision::NoOpinion }, String::new())
        }
        fn rules_for(&self, _: &UserInfo, _: &str) -> (Vec<ResourceRule>, Vec<NonResourceRule>, bool) {
            (vec![], vec![], false)
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn admin() -> UserInfo {
        UserInfo::authenticated("admin".into(), String::new(), vec![])
    }

    #[test]
    fn impersonates_users_groups_extra_and_service_accounts() {
        let chain = Chain {
            authorizers: vec![Arc::new(Allow(vec![
                ("users", "bob"),
                ("groups", "devs"),
                ("userextras", "x"),
                ("uids", "1234"),
                ("serviceaccounts", "robot"),
            ]))],
        };
        let none = headers(&[]);
        assert_eq!(impersonate(&admin(), &none, &chain).unwrap(), admin());
        let h = headers(&[
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "devs"),
            ("Impersonate-Extra-Scopes%2fa", "x"),
            ("Impersonate-Uid", "1234"),
        ]);
        let u = impersonate(&admin(), &h, &chain).unwrap();
        assert_eq!(u.username, "bob");
        assert_eq!(u.groups, ["devs", "system:authenticated"]);
        assert_eq!(u.uid, "1234");
        assert_eq!(u.extra["scopes/a"], ["x"]);
        let u =
            impersonate(&admin(), &headers(&[("Impersonate-User", "system:serviceaccount:ns:robot")]), &chain).unwrap();
        assert_eq!(u.groups, ["system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"]);
    }

    #[test]
    fn refusals_say_what_was_refused() {
        let chain = Chain { authorizers: vec![Arc::new(Allow(vec![("users", "bob")]))] };
        let e = impersonate(&admin(), &headers(&[("Impersonate-User", "carol")]), &chain).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            r#"users "carol" is forbidden: User "admin" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        let e = impersonate(
            &admin(),
            &headers(&[("Impersonate-User", "bob"), ("Impersonate-Group", "system:masters")]),
            &chain,
        )
        .unwrap_err();
        assert!(e.message.starts_with(r#"groups "system:masters" is forbidden"#), "{}", e.message);
        let e = impersonate(&admin(), &headers(&[("Impersonate-Group", "devs")]), &chain).unwrap_err();
        assert_eq!(e.code, 500);
        assert!(e.message.contains("without impersonating a user"));
    }
}

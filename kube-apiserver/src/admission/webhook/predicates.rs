//! A webhook's `namespaceSelector` and `objectSelector` (upstream's `predicates/namespace` and
//! `predicates/object`): the first on the labels of the request's namespace (for a Namespace itself, the object's
//! own labels on create and update), the second on the labels of the new or the old object.

use api_types::ApiError;
use api_types::selector::LabelSelector;
use serde_json::Value;

use super::Cluster;
use crate::admission::{Operation, Request};

/// A parsed selector of a webhook; an unparsable one fails every request it is asked about with a 500.
#[derive(Debug, Clone)]
pub enum Selector {
    /// Absent, null or `{}`: everything (the v1 default).
    Everything,
    Parsed(LabelSelector),
    Invalid(String),
}

impl Selector {
    pub fn from_json(v: Option<&Value>) -> Selector {
        match v {
            None | Some(Value::Null) => Selector::Everything,
            Some(v) => match LabelSelector::from_json(v) {
                Ok(s) if s.is_empty() => Selector::Everything,
                Ok(s) => Selector::Parsed(s),
                Err(e) => Selector::Invalid(e.to_string()),
            },
        }
    }

    fn parsed(&self) -> Result<Option<&LabelSelector>, ApiError> {
        match self {
            Selector::Everything => Ok(None),
            Selector::Parsed(s) => Ok(Some(s)),
            Selector::Invalid(e) => Err(ApiError::internal(e.clone())),
        }
    }
}

fn labels(obj: Option<&Value>) -> Option<&Value> {
    obj?.get("metadata")?.get("labels")
}

/// Whether the request's namespace is selected (upstream's `MatchNamespaceSelector`). A cluster-scoped request
/// (other than for a Namespace) is never exempted; a namespace that does not exist is its 404.
pub async fn namespace_matches(
    cluster: &dyn Cluster,
    selector: &Selector,
    r: &Request<'_>,
    object: Option<&Value>,
) -> Result<bool, ApiError> {
    let namespaces = r.resource.group.is_empty() && r.resource.plural == "namespaces";
    if r.namespace.is_empty() && !namespaces {
        return Ok(true);
    }
    let Some(selector) = selector.parsed()? else { return Ok(true) };
    // A Namespace being created or updated is matched on its own (new) labels: the cache does not have them yet.
    if namespaces && r.subresource.is_empty() && matches!(r.operation, Operation::Create | Operation::Update) {
        return Ok(selector.matches_value(labels(object)));
    }
    let name = if namespaces && r.namespace.is_empty() { r.name } else { r.namespace };
    let ns = cluster.namespace(name).await?;
    Ok(selector.matches_value(labels(Some(&ns))))
}

/// Whether the new or the old object is selected (upstream's `MatchObjectSelector`).
pub fn object_matches(selector: &Selector, object: Option<&Value>, old: Option<&Value>) -> Result<bool, ApiError> {
    let Some(selector) = selector.parsed()? else { return Ok(true) };
    let one = |o: Option<&Value>| o.is_some_and(|o| selector.matches_value(labels(Some(o))));
    Ok(one(object) || one(old))
}

#[cfg(test)]
mod tests {
    //! Upstream's `namespace/matcher_test.go` and `object/matcher_test.go` cases.
    use super::*;
    use crate::admission::webhook::BoxFuture;
    use crate::auth::UserInfo;
    use serde_json::json;

    /// One namespace, `runlevel: 1`.
    struct OneNamespace;

    impl Cluster for OneNamespace {
        fn namespace<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
            Box::pin(async move {
                if name == "ns" {
                    Ok(json!({"metadata": {"name": "ns", "labels": {"runlevel": "1"}}}))
                } else {
                    Err(ApiError::not_found("", "namespaces", name))
                }
            })
        }
        fn service_endpoint<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: u16,
        ) -> BoxFuture<'a, Result<(String, u16), String>> {
            Box::pin(async { Err("no services".to_string()) })
        }
    }

    fn req<'a>(res: &'static api_types::Resource, ns: &'a str, op: Operation, user: &'a UserInfo) -> Request<'a> {
        Request {
            operation: op,
            resource: res,
            subresource: "",
            namespace: ns,
            name: "n",
            object: None,
            old: None,
            user,
            dry_run: false,
        }
    }

    #[tokio::test]
    async fn namespace_selector() {
        let user = UserInfo::default();
        let pods = api_types::resources::find("", "v1", "pods").unwrap();
        let nodes = api_types::resources::find("", "v1", "nodes").unwrap();
        let namespaces = api_types::resources::find("", "v1", "namespaces").unwrap();
        let in1 = Selector::from_json(Some(
            &json!({"matchExpressions": [{"key": "runlevel", "operator": "In", "values": ["1"]}]}),
        ));
        let not_in1 = Selector::from_json(Some(
            &json!({"matchExpressions": [{"key": "runlevel", "operator": "NotIn", "values": ["1"]}]}),
        ));
        let c = &OneNamespace;
        // A cluster-scoped resource is never exempted.
        assert!(namespace_matches(c, &not_in1, &req(nodes, "", Operation::Create, &user), None).await.unwrap());
        // The request's namespace labels decide.
        assert!(namespace_matches(c, &in1, &req(pods, "ns", Operation::Create, &user), None).await.unwrap());
        assert!(!namespace_matches(c, &not_in1, &req(pods, "ns", Operation::Create, &user), None).await.unwrap());
        assert!(
            namespace_matches(c, &Selector::Everything, &req(pods, "gone", Operation::Create, &user), None)
                .await
                .unwrap()
        );
        let missing = namespace_matches(c, &in1, &req(pods, "gone", Operation::Create, &user), None).await;
        assert_eq!(missing.unwrap_err().code, 404);
        // A Namespace being created is matched on its own labels, one being deleted on the stored one.
        let new_ns = json!({"metadata": {"name": "other", "labels": {"runlevel": "1"}}});
        let mut create = req(namespaces, "", Operation::Create, &user);
        create.name = "other";
        assert!(namespace_matches(c, &in1, &create, Some(&new_ns)).await.unwrap());
        let mut delete = req(namespaces, "", Operation::Delete, &user);
        delete.name = "ns";
        assert!(namespace_matches(c, &in1, &delete, None).await.unwrap());
        assert!(!namespace_matches(c, &not_in1, &delete, None).await.unwrap());
        // An invalid selector is a 500.
        let bad = Selector::from_json(Some(&json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})));
        let err = namespace_matches(c, &bad, &req(pods, "ns", Operation::Create, &user), None).await.unwrap_err();
        assert_eq!(err.code, 500);
    }

    #[test]
    fn object_selector() {
        let sel = Selector::from_json(Some(&json!({"matchLabels": {"runlevel": "1"}})));
        let with = json!({"metadata": {"labels": {"runlevel": "1"}}});
        let without = json!({"metadata": {"labels": {"runlevel": "2"}}});
        assert!(object_matches(&sel, Some(&with), None).unwrap());
        assert!(object_matches(&sel, Some(&without), Some(&with)).unwrap());
        assert!(object_matches(&sel, None, Some(&with)).unwrap());
        assert!(!object_matches(&sel, Some(&without), Some(&without)).unwrap());
        assert!(!object_matches(&sel, None, None).unwrap());
        assert!(object_matches(&Selector::Everything, None, None).unwrap());
        assert!(object_matches(&Selector::from_json(Some(&json!({}))), Some(&without), None).unwrap());
    }
}

//! Apply conflicts and their 409 (upstream's `internal/conflict.go`): one cause `FieldManagerConflict` per
//! conflicting path, and the message `Apply failed with 1 conflict: conflict with "m" using apps/v1: .spec.replicas`
//! (several: grouped by manager, managers sorted).

use api_types::ApiError;
use serde_json::json;

use super::fieldpath::Path;

/// One conflicting path and the manager (as `printManager` describes it) that owns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub path: Path,
}

/// The 409 of an apply with conflicts.
pub fn error(conflicts: &[Conflict]) -> ApiError {
    let causes: Vec<_> = conflicts
        .iter()
        .map(|c| {
            json!({"type": "FieldManagerConflict", "message": format!("conflict with {}", c.manager), "field": c.path.to_string()})
        })
        .collect();
    let mut e = ApiError::new(409, "Conflict", message(conflicts));
    e.details = Some(Box::new(json!({"causes": causes})));
    e
}

fn message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with {}: {}", c.manager, c.path);
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort_unstable();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| c.manager == m) {
            lines.push(format!("- {}", c.path));
        }
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::super::fieldpath::{Path, field};
    use super::*;

    // Upstream conflict_test.go TestNewConflictError.
    #[test]
    fn messages_and_causes_as_upstream() {
        let one = [Conflict {
            manager: "\"kubectl-client-side-apply\" using apps/v1".into(),
            path: Path(vec![field("spec"), field("replicas")]),
        }];
        let e = error(&one);
        assert_eq!(e.code, 409);
        assert_eq!(e.reason, "Conflict");
        assert_eq!(
            e.message,
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        assert_eq!(
            *e.details.unwrap(),
            json!({"causes": [{"type": "FieldManagerConflict", "message": "conflict with \"kubectl-client-side-apply\" using apps/v1", "field": ".spec.replicas"}]})
        );
        let many = [
            Conflict { manager: "\"foo\"".into(), path: Path(vec![field("spec"), field("replicas")]) },
            Conflict { manager: "\"bar\" using v1".into(), path: Path(vec![field("data"), field("a")]) },
            Conflict { manager: "\"foo\"".into(), path: Path(vec![field("spec"), field("paused")]) },
        ];
        assert_eq!(
            error(&many).message,
            "Apply failed with 3 conflicts: conflicts with \"bar\" using v1:\n- .data.a\nconflicts with \"foo\":\n- .spec.replicas\n- .spec.paused"
        );
    }
}

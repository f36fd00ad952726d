//! The RBAC authorizer (filled in by its own change).

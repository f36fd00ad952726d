//! The Node authorizer (filled in by its own change).

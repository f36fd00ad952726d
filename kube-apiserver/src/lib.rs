//! kube-apiserver: the Kubernetes API server. For now this crate holds the storage layer only the apiserver
//! touches ([`storage`]); the HTTP API comes next (issue 3).

pub mod storage;

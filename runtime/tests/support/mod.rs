//! The in-process apiserver of `kube_apiserver::testing`.

#![allow(unused_imports)]

pub use kube_apiserver::testing::*;

//! The Service registry's own behaviour (upstream's `pkg/registry/core/service`): allocation of ClusterIPs and
//! node ports around creates, updates and deletes ([`storage`], [`alloc`]), the update strategy's clearing of
//! type-dependent fields ([`strategy`]) and Service validation ([`validation`]); [`util`] reads and writes the
//! spec. The allocators themselves (keys in storage) are [`crate::ipalloc`].

pub mod alloc;
pub mod storage;
pub mod strategy;
pub mod util;
pub mod validation;

pub use alloc::{Allocators, Transaction};

//! kubeadm: bootstraps a Kubernetes cluster as upstream's kubeadm does. `cmd` parses the command line (clap),
//! `phases` hold the init/join/reset workflows one module per upstream phase, built on `pki`, `kubeconfig`,
//! `manifests` and `config`. Every file goes through [`fs::Fs`] so tests run against a temp root or in memory.

pub mod cmd;
pub mod config;
pub mod constants;
pub mod fs;
pub mod kubeconfig;
pub mod kubelet;
pub mod manifests;
pub mod phases;
pub mod pki;
pub mod token;
pub mod util;

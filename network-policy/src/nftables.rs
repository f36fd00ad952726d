//! Running nftables scripts: the real runner feeds `nft -f -` (optionally under a prefix such as
//! `ip netns exec NAME`), the recording one keeps the scripts for tests.

use std::future::Future;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("nft -f failed ({status}): {stderr}")]
    Failed { status: std::process::ExitStatus, stderr: String },
}

/// Applies nftables scripts.
pub trait Runner: Send + Sync + 'static {
    fn apply(&self, script: &str) -> impl Future<Output = Result<(), Error>> + Send;
}

/// `nft -f -`.
#[derive(Debug, Clone)]
pub struct Nft {
    /// The program and its first arguments (`["nft"]`, or `["ip", "netns", "exec", "node-b", "nft"]`).
    command: Vec<String>,
}

impl Default for Nft {
    fn default() -> Self {
        Nft { command: vec!["nft".into()] }
    }
}

impl Nft {
    /// `nft` run through `command` (its program and first arguments), e.g. inside a network namespace.
    pub fn with_command(command: Vec<String>) -> Self {
        Nft { command }
    }
}

impl Runner for Nft {
    async fn apply(&self, script: &str) -> Result<(), Error> {
        let what = self.command.join(" ");
        let (program, args) = self.command.split_first().ok_or_else(|| {
            Error::Spawn(what.clone(), std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command"))
        })?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Spawn(what.clone(), e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes()).await.map_err(|e| Error::Spawn(what.clone(), e))?;
        }
        let out = child.wait_with_output().await.map_err(|e| Error::Spawn(what, e))?;
        if !out.status.success() {
            return Err(Error::Failed { status: out.status, stderr: String::from_utf8_lossy(&out.stderr).into() });
        }
        Ok(())
    }
}

/// Keeps every script applied, in order (tests).
#[derive(Debug, Clone, Default)]
pub struct Recording {
    scripts: Arc<Mutex<Vec<String>>>,
}

impl Recording {
    pub fn scripts(&self) -> Vec<String> {
        self.scripts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn last(&self) -> Option<String> {
        self.scripts().pop()
    }
}

impl Runner for Recording {
    async fn apply(&self, script: &str) -> Result<(), Error> {
        self.scripts.lock().unwrap_or_else(|e| e.into_inner()).push(script.to_string());
        Ok(())
    }
}

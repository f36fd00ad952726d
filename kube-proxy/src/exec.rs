//! Running the data-plane tools (`nft`, `iptables-restore`, `conntrack`, `ip`): one small trait with the real
//! runner (optionally inside a named network namespace, through `ip netns exec`) and a recording fake for unit
//! tests (upstream's `k8s.io/utils/exec` and its fake).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Runs a program with arguments and optional standard input.
pub trait Exec: Send + Sync {
    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> std::io::Result<Output>;

    /// Whether the tools act on this process's own network namespace, so the nftables proxier may also write
    /// through its own netlink socket ([`crate::nfnetlink`]); a fake or a runner in another namespace says no.
    fn own_netns(&self) -> bool {
        false
    }
}

/// Runs the real tools, in the host's network namespace or in a named one (`ip netns exec <name> ...`).
#[derive(Debug, Clone, Default)]
pub struct RealExec {
    pub netns: Option<String>,
}

impl RealExec {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs every command inside `/run/netns/<name>`.
    pub fn in_netns(name: &str) -> Self {
        RealExec { netns: Some(name.to_string()) }
    }
}

impl Exec for RealExec {
    fn own_netns(&self) -> bool {
        self.netns.is_none()
    }

    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> std::io::Result<Output> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn()?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // Written from a thread so a tool that prints a lot before reading everything cannot deadlock us
            // (scoped: a full sync's input is tens of megabytes, not worth copying).
            return std::thread::scope(|scope| {
                let writer = scope.spawn(move || pipe.write_all(input.as_bytes()));
                let out = child.wait_with_output()?;
                writer.join().map_err(|_| std::io::Error::other("stdin writer panicked"))??;
                Ok(to_output(out))
            });
        }
        Ok(to_output(child.wait_with_output()?))
    }
}

fn to_output(o: std::process::Output) -> Output {
    Output {
        status: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// One recorded command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Program and arguments joined by spaces.
    pub cmd: String,
    pub stdin: Option<String>,
}

type Responder = dyn Fn(&str, &[&str]) -> Output + Send + Sync;

/// Records every command; answers with a configurable responder (success with no output by default).
#[derive(Clone, Default)]
pub struct FakeExec {
    calls: Arc<Mutex<Vec<Call>>>,
    responder: Option<Arc<Responder>>,
}

impl FakeExec {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers each command with `f(program, args)`.
    pub fn with_responder(f: impl Fn(&str, &[&str]) -> Output + Send + Sync + 'static) -> Self {
        FakeExec { calls: Arc::default(), responder: Some(Arc::new(f)) }
    }

    /// The commands run so far (and forgets them).
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Exec for FakeExec {
    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> std::io::Result<Output> {
        let cmd = std::iter::once(program).chain(args.iter().copied()).collect::<Vec<_>>().join(" ");
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push(Call { cmd, stdin: stdin.map(str::to_string) });
        Ok(self.responder.as_ref().map(|r| r(program, args)).unwrap_or_default())
    }
}

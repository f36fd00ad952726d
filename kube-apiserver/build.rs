//! Build stamps for `/version`, as upstream's `-ldflags -X` stamps: the commit (hex), whether the tree had
//! uncommitted changes, and the build time (UTC, or `SOURCE_DATE_EPOCH` for reproducible builds).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "HEAD"]).filter(|c| c.len() == 40).unwrap_or_else(|| "0".repeat(40));
    let state = match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(s) if s.is_empty() => "clean",
        Some(_) => "dirty",
        None => "archive",
    };
    // `date` formats the time (SOURCE_DATE_EPOCH for reproducible builds), as upstream's build scripts do.
    let mut date_args = vec!["-u".to_string(), "+%Y-%m-%dT%H:%M:%SZ".to_string()];
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        date_args.push(format!("--date=@{epoch}"));
    }
    let date = Command::new("date")
        .args(&date_args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
    println!("cargo:rustc-env=KUBE_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=KUBE_GIT_TREE_STATE={state}");
    println!("cargo:rustc-env=KUBE_BUILD_DATE={date}");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}

//! Backup and restore of the embedded store (the counterpart of `etcdctl snapshot save|restore|status` for the
//! SQLite database `<--data-dir>/state.db`): `kube-apiserver snapshot save <file> --data-dir=DIR` copies the
//! database while the apiserver runs with SQLite's online backup API (one read transaction, so the copy is the
//! store at one revision, however busy the writer is; WAL mode lets the writer go on meanwhile),
//! `kube-apiserver snapshot restore <file> --data-dir=DIR` turns a snapshot into a new data directory (which must not
//! exist yet, as etcdctl's), and `kube-apiserver snapshot status <file>` prints its hash, revision, keys and size.
//! The apiserver then starts on the restored directory at the snapshot's revision.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

/// The database file inside `--data-dir` (see [`super::sqlite::SqliteConfig::in_dir`]).
pub const DB_FILE: &str = "state.db";

/// `kube-apiserver snapshot ...`.
#[derive(Parser, Debug)]
#[command(
    name = "kube-apiserver snapshot",
    bin_name = "kube-apiserver snapshot",
    about = "Manages snapshots of the embedded store"
)]
pub struct SnapshotCli {
    #[command(subcommand)]
    pub command: SnapshotCmd,
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Stores a snapshot of the running store to a file
    Save {
        file: PathBuf,
        /// The apiserver's --data-dir.
        #[arg(long, default_value = "/var/lib/kube-apiserver")]
        data_dir: PathBuf,
    },
    /// Restores a snapshot into a new data directory
    Restore {
        file: PathBuf,
        /// The data directory to create (it must not exist); start the apiserver with it as --data-dir.
        #[arg(long, default_value = "/var/lib/kube-apiserver")]
        data_dir: PathBuf,
    },
    /// Gets the status of a snapshot file
    Status {
        file: PathBuf,
        /// Output format: simple, table or json.
        #[arg(short = 'w', long, default_value = "simple")]
        write_out: String,
    },
}

/// What a snapshot holds (etcdctl's `snapshot status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The first 4 bytes of the SHA-256 of the live keys and values, as hex: equal stores have equal hashes.
    pub hash: String,
    pub revision: i64,
    pub total_keys: i64,
    pub total_size: u64,
}

type Result<T> = std::result::Result<T, String>;

fn open(path: &Path, flags: OpenFlags) -> Result<Connection> {
    let c = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    c.busy_timeout(Duration::from_secs(10)).map_err(|e| e.to_string())?;
    Ok(c)
}

/// Copies `src` into `dst` in one step (one read transaction of `src`), retrying while the source is busy.
fn copy(src: &Connection, dst: &mut Connection) -> Result<()> {
    let backup = Backup::new(src, dst).map_err(|e| format!("backup: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match backup.step(-1).map_err(|e| format!("backup: {e}"))? {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            _ if Instant::now() > deadline => return Err("backup: the database stayed busy for 60s".into()),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Checks a copy: SQLite's integrity check, and the store's tables.
fn verify(c: &Connection, what: &Path) -> Result<()> {
    let ok: String =
        c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(|e| format!("{}: {e}", what.display()))?;
    if ok != "ok" {
        return Err(format!("{}: integrity check failed: {ok}", what.display()));
    }
    let tables: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('log', 'live', 'meta')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| format!("{}: {e}", what.display()))?;
    if tables != 3 {
        return Err(format!("{}: not a snapshot of the embedded store", what.display()));
    }
    Ok(())
}

fn status_of(c: &Connection, size: u64) -> Result<Status> {
    let e = |e: rusqlite::Error| e.to_string();
    let revision: i64 = c.query_row("SELECT value FROM meta WHERE name = 'current'", [], |r| r.get(0)).map_err(e)?;
    let total_keys: i64 = c.query_row("SELECT COUNT(*) FROM live", [], |r| r.get(0)).map_err(e)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut stmt = c
        .prepare("SELECT live.key, log.value FROM live JOIN log ON log.rev = live.mod_rev ORDER BY live.key")
        .map_err(e)?;
    let mut rows = stmt.query([]).map_err(e)?;
    while let Some(r) = rows.next().map_err(e)? {
        let k: String = r.get(0).map_err(e)?;
        let v: Vec<u8> = r.get(1).map_err(e)?;
        ctx.update(&(k.len() as u64).to_be_bytes());
        ctx.update(k.as_bytes());
        ctx.update(&(v.len() as u64).to_be_bytes());
        ctx.update(&v);
    }
    let hash = ctx.finish().as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
    Ok(Status { hash, revision, total_keys, total_size: size })
}

fn fsync(path: &Path) -> Result<()> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| format!("sync {}: {e}", path.display()))
}

/// Saves the store of `data_dir` (running or not) to `file`, atomically (written aside, then renamed).
pub fn save(data_dir: &Path, file: &Path) -> Result<Status> {
    let db = data_dir.join(DB_FILE);
    if !db.exists() {
        return Err(format!("no embedded store at {} (is --data-dir right?)", db.display()));
    }
    let src = open(&db, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let part = PathBuf::from(format!("{}.part", file.display()));
    let _ = std::fs::remove_file(&part);
    let result = (|| {
        let mut dst = open(&part, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        copy(&src, &mut dst)?;
        // A single self-contained file (the copied header says WAL; the snapshot needs no -wal beside it).
        let mode: String = dst.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0)).map_err(|e| e.to_string())?;
        if mode != "delete" {
            return Err(format!("snapshot: journal mode {mode}"));
        }
        verify(&dst, file)?;
        let size = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let st = status_of(&dst, size)?;
        drop(dst);
        fsync(&part)?;
        std::fs::rename(&part, file).map_err(|e| format!("rename to {}: {e}", file.display()))?;
        Ok(st)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

/// The status of a snapshot file.
pub fn status(file: &Path) -> Result<Status> {
    let c = open(file, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    verify(&c, file)?;
    let size = std::fs::metadata(file).map(|m| m.len()).map_err(|e| e.to_string())?;
    status_of(&c, size)
}

/// Restores `file` into a new `data_dir` (etcdctl refuses an existing data dir too: it would mix two stores).
pub fn restore(file: &Path, data_dir: &Path) -> Result<Status> {
    if data_dir.join(DB_FILE).exists() {
        return Err(format!("data-dir {:?} exists", data_dir.display().to_string()));
    }
    let src = open(file, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    verify(&src, file)?;
    std::fs::create_dir_all(data_dir).map_err(|e| format!("create {}: {e}", data_dir.display()))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700));
    let db = data_dir.join(DB_FILE);
    let mut dst = open(&db, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
    copy(&src, &mut dst)?;
    let _: String = dst.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    verify(&dst, &db)?;
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let st = status_of(&dst, size)?;
    drop(dst);
    fsync(&db)?;
    Ok(st)
}

/// etcdctl's human-readable sizes (`humanize.Bytes`: 1000-based, one decimal).
fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 { format!("{n} B") } else { format!("{v:.1} {}", units[i]) }
}

/// The status as etcdctl prints it (`-w simple|table|json`).
pub fn format_status(s: &Status, how: &str) -> Result<String> {
    match how {
        "simple" => Ok(format!("{}, {}, {}, {}", s.hash, s.revision, s.total_keys, human(s.total_size))),
        "json" => Ok(serde_json::json!({
            "hash": u32::from_str_radix(&s.hash, 16).unwrap_or(0),
            "revision": s.revision, "totalKey": s.total_keys, "totalSize": s.total_size,
        })
        .to_string()),
        "table" => {
            let cells = [s.hash.clone(), s.revision.to_string(), s.total_keys.to_string(), human(s.total_size)];
            let heads = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
            let w: Vec<usize> = heads.iter().zip(&cells).map(|(h, c)| h.len().max(c.len()) + 2).collect();
            let line: String = format!("+{}+", w.iter().map(|n| "-".repeat(*n)).collect::<Vec<_>>().join("+"));
            let center = |t: &str, n: usize| {
                let l = (n - t.len()) / 2;
                format!("{}{t}{}", " ".repeat(l), " ".repeat(n - t.len() - l))
            };
            let head = heads.iter().zip(&w).map(|(h, n)| center(h, *n)).collect::<Vec<_>>().join("|");
            let row = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 || i == 3 {
                        format!(" {c:<n$} ", n = w[i] - 2)
                    } else {
                        format!(" {c:>n$} ", n = w[i] - 2)
                    }
                })
                .collect::<Vec<_>>()
                .join("|");
            Ok(format!("{line}\n|{head}|\n{line}\n|{row}|\n{line}"))
        }
        other => Err(format!("unknown output format {other:?} (simple, table or json)")),
    }
}

/// Runs `kube-apiserver snapshot ...` (`args` starts with `snapshot`); prints as etcdctl and returns the exit code.
pub fn run_cli(args: impl IntoIterator<Item = String>) -> i32 {
    let cli = match SnapshotCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let r = match cli.command {
        SnapshotCmd::Save { file, data_dir } => save(&data_dir, &file).map(|st| {
            format!("Snapshot saved at {} (revision {}, {} keys)", file.display(), st.revision, st.total_keys)
        }),
        SnapshotCmd::Restore { file, data_dir } => restore(&file, &data_dir).map(|st| {
            format!(
                "Restored snapshot {} to {} (revision {}, {} keys); start kube-apiserver with --data-dir={}",
                file.display(),
                data_dir.display(),
                st.revision,
                st.total_keys,
                data_dir.display()
            )
        }),
        SnapshotCmd::Status { file, write_out } => status(&file).and_then(|st| format_status(&st, &write_out)),
    };
    match r {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

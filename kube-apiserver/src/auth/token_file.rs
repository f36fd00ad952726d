//! Static bearer tokens from `--token-auth-file` (upstream's CSV: `token,user,uid[,"group1,group2"]`).

use std::collections::HashMap;
use std::path::Path;

use super::UserInfo;

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}:{line}: {reason}")]
    Format { path: String, line: usize, reason: &'static str },
}

/// Splits one CSV record, honouring double quotes (`"a,b"`) and doubled quotes inside them.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// Reads upstream's token file into a map from token to user.
pub fn load(path: &Path) -> Result<HashMap<String, UserInfo>, TokenFileError> {
    let mut tokens = HashMap::new();
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Io { path: p.clone(), source })?;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f = csv_fields(line);
        if f.len() < 3 {
            return Err(TokenFileError::Format { path: p, line: i + 1, reason: "expected token,user,uid[,groups]" });
        }
        if f[0].is_empty() || f[1].is_empty() {
            return Err(TokenFileError::Format { path: p, line: i + 1, reason: "token and user must not be empty" });
        }
        let groups =
            f.get(3).map(|g| g.split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect());
        tokens.insert(f[0].clone(), UserInfo::authenticated(f[1].clone(), f[2].clone(), groups.unwrap_or_default()));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        std::fs::write(&path, "onlytoken\n").unwrap();
        assert!(load(&path).is_err());
        std::fs::write(&path, "secret1,alice,1001,\"dev,ops\"\n").unwrap();
        assert_eq!(load(&path).unwrap()["secret1"].groups, ["dev", "ops", "system:authenticated"]);
    }
}

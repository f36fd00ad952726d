//! Authentication: x509 client certificates (verified by rustls against `--client-ca-file`), static bearer
//! tokens from `--token-auth-file`, and anonymous requests (`--anonymous-auth`). Authorization is AlwaysAllow
//! until RBAC lands; the review endpoints answer truthfully for that mode.

use std::collections::HashMap;
use std::path::Path;

use api_types::ApiError;

/// Who is asking, as upstream's `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Extra attributes (`authentication.kubernetes.io/pod-name`, credential ids, scopes...).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        UserInfo {
            username: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: Default::default(),
        }
    }

    pub fn authenticated(username: String, uid: String, mut groups: Vec<String>) -> Self {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        UserInfo { username, uid, groups, extra: Default::default() }
    }
}

#[derive(Debug, Default)]
pub struct Authenticator {
    tokens: HashMap<String, UserInfo>,
    anonymous: bool,
}

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

impl Authenticator {
    pub fn new(anonymous: bool) -> Self {
        Authenticator { tokens: HashMap::new(), anonymous }
    }

    /// Loads upstream's token file: `token,user,uid[,"group1,group2"]` per line.
    pub fn load_token_file(&mut self, path: &Path) -> Result<(), TokenFileError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Io { path: p.clone(), source })?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f = csv_fields(line);
            if f.len() < 3 {
                return Err(TokenFileError::Format {
                    path: p,
                    line: i + 1,
                    reason: "expected token,user,uid[,groups]",
                });
            }
            if f[0].is_empty() || f[1].is_empty() {
                return Err(TokenFileError::Format {
                    path: p,
                    line: i + 1,
                    reason: "token and user must not be empty",
                });
            }
            let groups =
                f.get(3).map(|g| g.split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect());
            self.tokens
                .insert(f[0].clone(), UserInfo::authenticated(f[1].clone(), f[2].clone(), groups.unwrap_or_default()));
        }
        Ok(())
    }

    /// Authenticates a request from its verified client certificate identity and Authorization header.
    pub fn authenticate(
        &self,
        cert: Option<&(String, Vec<String>)>,
        authorization: Option<&str>,
    ) -> Result<UserInfo, ApiError> {
        if let Some((cn, orgs)) = cert {
            return Ok(UserInfo::authenticated(cn.clone(), String::new(), orgs.clone()));
        }
        if let Some(header) = authorization {
            let token = header.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty());
            return match token.and_then(|t| self.tokens.get(t)) {
                Some(user) => Ok(user.clone()),
                // A token nobody issued is refused, even when anonymous requests are allowed (as upstream).
                None => Err(ApiError::unauthorized()),
            };
        }
        if self.anonymous { Ok(UserInfo::anonymous()) } else { Err(ApiError::unauthorized()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_and_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        std::fs::write(&path, "secret1,alice,1001,\"dev,ops\"\nsecret2,bob,1002\n").unwrap();
        let mut a = Authenticator::new(true);
        a.load_token_file(&path).unwrap();
        let alice = a.authenticate(None, Some("Bearer secret1")).unwrap();
        assert_eq!(alice.username, "alice");
        assert_eq!(alice.groups, ["dev", "ops", "system:authenticated"]);
        assert_eq!(a.authenticate(None, Some("Bearer secret2")).unwrap().groups, ["system:authenticated"]);
        assert_eq!(a.authenticate(None, Some("Bearer nope")).unwrap_err().code, 401);
        assert_eq!(a.authenticate(None, None).unwrap().username, "system:anonymous");
        let cert = ("admin".to_string(), vec!["system:masters".to_string()]);
        assert_eq!(a.authenticate(Some(&cert), Some("Bearer secret1")).unwrap().username, "admin");
        assert_eq!(Authenticator::new(false).authenticate(None, None).unwrap_err().code, 401);
    }

    #[test]
    fn malformed_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        std::fs::write(&path, "onlytoken\n").unwrap();
        assert!(Authenticator::new(true).load_token_file(&path).is_err());
    }
}

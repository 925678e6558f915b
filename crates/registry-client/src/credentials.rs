//! Registry credentials: given explicitly, or read from Docker's
//! `config.json` (`auths`, `credHelpers`, `credsStore`) the way docker,
//! skopeo and crane read it. Secrets never appear in `Debug` output or in
//! error messages.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Error, Result};

/// What to authenticate with at one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (or a personal access token).
    Basic {
        /// The user name.
        username: String,
        /// The password; never printed.
        password: String,
    },
    /// An OAuth2 refresh token issued by the registry (`identitytoken`).
    IdentityToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => write!(f, "Basic({username}:****)"),
            Self::IdentityToken(_) => f.write_str("IdentityToken(****)"),
        }
    }
}

/// Where credentials come from: explicit entries first, then a Docker
/// `config.json`.
///
/// ```
/// use registry_client::{CredentialStore, Credentials};
/// let mut store = CredentialStore::empty();
/// store.insert("127.0.0.1:5000", Credentials::Basic { username: "u".into(), password: "p".into() });
/// assert_eq!(format!("{store:?}").contains("p\""), false);
/// ```
#[derive(Clone, Default)]
pub struct CredentialStore {
    explicit: HashMap<String, Credentials>,
    config: Option<DockerConfig>,
    config_path: Option<PathBuf>,
    helper_path: Option<std::ffi::OsString>,
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialStore")
            .field("explicit", &self.explicit)
            .field("config_path", &self.config_path)
            .finish()
    }
}

#[derive(Clone, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Clone, Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

impl CredentialStore {
    /// No credentials at all: every registry is accessed anonymously.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Reads Docker's config: `authfile` when given, else
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. A missing
    /// default file means no credentials; a missing `authfile` is an error.
    pub fn from_docker_config(authfile: Option<&Path>) -> Result<Self> {
        let (path, required) = match authfile {
            Some(p) => (p.to_path_buf(), true),
            None => match std::env::var_os("DOCKER_CONFIG") {
                Some(dir) => (PathBuf::from(dir).join("config.json"), false),
                None => match std::env::var_os("HOME") {
                    Some(home) => (PathBuf::from(home).join(".docker/config.json"), false),
                    None => return Ok(Self::empty()),
                },
            },
        };
        let text = match fs_err::read(&path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::empty());
            }
            Err(e) => {
                return Err(Error::Credentials {
                    source_name: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
        };
        let config: DockerConfig =
            serde_json::from_slice(&text).map_err(|e| Error::Credentials {
                source_name: path.display().to_string(),
                // serde's message names the position, never the content.
                reason: format!("not a valid Docker config: {e}"),
            })?;
        Ok(Self {
            config: Some(config),
            config_path: Some(path),
            ..Self::default()
        })
    }

    /// Searches `docker-credential-*` helpers in `path` (a `PATH`-style
    /// list) instead of the process's `PATH`.
    pub fn with_helper_path(mut self, path: impl Into<std::ffi::OsString>) -> Self {
        self.helper_path = Some(path.into());
        self
    }

    /// Sets credentials for one registry host, overriding the config file.
    pub fn insert(&mut self, registry: &str, credentials: Credentials) {
        self.explicit.insert(registry.to_owned(), credentials);
    }

    /// The credentials for `registry`, running a credential helper if the
    /// config names one.
    pub async fn get(&self, registry: &str) -> Result<Option<Credentials>> {
        if let Some(c) = self.explicit.get(registry) {
            return Ok(Some(c.clone()));
        }
        let Some(config) = &self.config else {
            return Ok(None);
        };
        let source_name = self
            .config_path
            .as_ref()
            .map_or_else(|| "config.json".to_owned(), |p| p.display().to_string());
        let keys = config_keys(registry);
        if let Some(helper) = keys.iter().find_map(|k| config.cred_helpers.get(k)) {
            return run_helper(helper, registry, self.helper_path.as_deref()).await;
        }
        if let Some(entry) = keys.iter().find_map(|k| config.auths.get(k)) {
            return decode_entry(entry, &source_name, registry);
        }
        // Entries written as URLs: "https://host/v1/" and the like.
        if let Some(entry) = config.auths.iter().find_map(|(k, v)| {
            let host = k
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or("");
            keys.iter().any(|key| key == host).then_some(v)
        }) {
            return decode_entry(entry, &source_name, registry);
        }
        if let Some(store) = &config.creds_store {
            return run_helper(store, registry, self.helper_path.as_deref()).await;
        }
        Ok(None)
    }
}

/// The names under which Docker files a registry's credentials.
fn config_keys(registry: &str) -> Vec<String> {
    if registry == oci_model::DOCKER_HUB {
        vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![registry.to_owned()]
    }
}

fn decode_entry(
    entry: &AuthEntry,
    source_name: &str,
    registry: &str,
) -> Result<Option<Credentials>> {
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::IdentityToken(token.clone())));
    }
    if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
        let bad = || Error::Credentials {
            source_name: source_name.to_owned(),
            reason: format!("the `auth` entry for {registry} is not base64 of `user:password`"),
        };
        let decoded = STANDARD.decode(auth.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credentials::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some(Credentials::Basic {
            username: u.clone(),
            password: p.clone(),
        })),
        _ => Ok(None),
    }
}

#[derive(Deserialize)]
struct HelperReply {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// The most a credential helper may write on stdout, and on stderr: its
/// reply is a few hundred bytes.
const MAX_HELPER_OUTPUT: u64 = 64 * 1024;

/// Reads a pipe to its end; `None` when it holds more than `limit` bytes.
async fn read_capped(
    pipe: Option<impl tokio::io::AsyncRead + Unpin>,
    limit: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    if let Some(pipe) = pipe {
        pipe.take(limit + 1).read_to_end(&mut out).await?;
    }
    Ok((out.len() as u64 <= limit).then_some(out))
}

/// Runs `docker-credential-<helper> get` with the registry on stdin.
async fn run_helper(
    helper: &str,
    registry: &str,
    search_path: Option<&std::ffi::OsStr>,
) -> Result<Option<Credentials>> {
    let program = format!("docker-credential-{helper}");
    let fail = |reason: String| Error::Credentials {
        source_name: program.clone(),
        reason,
    };
    let mut command = tokio::process::Command::new(&program);
    if let Some(p) = search_path {
        command.env("PATH", p);
    }
    let mut child = command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot run: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(registry.as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    // Both pipes are read at once, so that a helper filling one while we
    // wait on the other cannot stall; each is bounded, and a helper that
    // writes more is killed.
    let (stdout, stderr) = tokio::join!(
        read_capped(child.stdout.take(), MAX_HELPER_OUTPUT),
        read_capped(child.stderr.take(), MAX_HELPER_OUTPUT),
    );
    let (stdout, stderr) = match (stdout, stderr) {
        (Ok(Some(out)), Ok(Some(err))) => (out, err),
        (Err(e), _) | (_, Err(e)) => {
            let _ = child.kill().await;
            return Err(fail(e.to_string()));
        }
        _ => {
            let _ = child.kill().await;
            return Err(fail(format!(
                "its output is larger than the {MAX_HELPER_OUTPUT}-byte limit"
            )));
        }
    };
    let status = child.wait().await.map_err(|e| fail(e.to_string()))?;
    if !status.success() {
        let stdout = String::from_utf8_lossy(&stdout);
        // Helpers say "credentials not found in native keychain" for an
        // unknown host: that means anonymous, not failure.
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let first_line = String::from_utf8_lossy(&stderr)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        return Err(fail(format!("exited with {status}: {first_line}")));
    }
    let reply: HelperReply =
        serde_json::from_slice(&stdout).map_err(|e| fail(format!("unexpected reply: {e}")))?;
    Ok(Some(if reply.username == "<token>" {
        Credentials::IdentityToken(reply.secret)
    } else {
        Credentials::Basic {
            username: reply.username,
            password: reply.secret,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(json: &str) -> (tempfile::TempDir, CredentialStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        let s = CredentialStore::from_docker_config(Some(&path)).unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn reads_auth_entries() {
        let auth = STANDARD.encode("alice:s3cret");
        let (_d, s) = store(&format!(
            r#"{{"auths":{{"r.example":{{"auth":"{auth}"}},
               "https://index.docker.io/v1/":{{"username":"bob","password":"pw"}},
               "https://u.example/v2/":{{"identitytoken":"tok"}}}}}}"#
        ));
        assert_eq!(
            s.get("r.example").await.unwrap(),
            Some(Credentials::Basic {
                username: "alice".into(),
                password: "s3cret".into()
            })
        );
        assert!(matches!(
            s.get("docker.io").await.unwrap(),
            Some(Credentials::Basic { username, .. }) if username == "bob"
        ));
        assert_eq!(
            s.get("u.example").await.unwrap(),
            Some(Credentials::IdentityToken("tok".into()))
        );
        assert_eq!(s.get("other.example").await.unwrap(), None);
        let debug = format!("{:?}", s.get("r.example").await.unwrap());
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[tokio::test]
    async fn runs_credential_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-fake");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread host\nif [ \"$host\" = r.example ]; then echo '{\"Username\":\"h\",\"Secret\":\"hs\"}'; \
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (_d, s) = store(r#"{"credsStore":"fake"}"#);
        let s = s.with_helper_path(format!("{}:/usr/bin:/bin", dir.path().display()));
        assert_eq!(
            s.get("r.example").await.unwrap(),
            Some(Credentials::Basic {
                username: "h".into(),
                password: "hs".into()
            })
        );
        assert_eq!(s.get("x.example").await.unwrap(), None);
    }

    #[tokio::test]
    async fn credential_helper_output_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        for (name, script) in [
            ("big", "head -c 200000 /dev/zero | tr '\\0' x"),
            ("endless", "exec yes"),
            ("noisy", "yes >&2"),
        ] {
            let helper = dir.path().join(format!("docker-credential-{name}"));
            std::fs::write(&helper, format!("#!/bin/sh\nread host\n{script}\n")).unwrap();
            std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
            let (_d, s) = store(&format!(r#"{{"credsStore":"{name}"}}"#));
            let s = s.with_helper_path(format!("{}:/usr/bin:/bin", dir.path().display()));
            let err = tokio::time::timeout(std::time::Duration::from_secs(30), s.get("r.example"))
                .await
                .expect("an answer in 30 s")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("output is larger than the 65536-byte limit"),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn bad_config_is_a_clear_error_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"auths":{"r":{"auth":"%%%notbase64-s3cret"}}}"#).unwrap();
        let s = CredentialStore::from_docker_config(Some(&path)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt.block_on(s.get("r")).unwrap_err().to_string();
        assert!(err.contains("not base64"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let missing = CredentialStore::from_docker_config(Some(&dir.path().join("nope.json")));
        assert!(missing.is_err());
    }
}

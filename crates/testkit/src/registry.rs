//! A real CNCF distribution registry (`docker-registry`) on a loopback
//! port, with its storage in a temporary directory.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fs_err as fs;
use tempfile::TempDir;

use crate::token::{ISSUER, SERVICE, TokenServer};
use crate::{Error, Result, find_program, io_err, net};

/// How long the registry gets to answer `GET /v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts with a fresh port when another process took the one we picked.
const PORT_ATTEMPTS: usize = 3;

/// Who may use a [`Registry`].
#[derive(Clone, Debug, Default)]
pub enum RegistryAuth {
    /// Anyone may pull and push.
    #[default]
    None,
    /// HTTP basic authentication against an htpasswd (bcrypt) file.
    Basic {
        /// The only user.
        user: String,
        /// Their password.
        password: String,
    },
    /// Docker token authentication through a [`TokenServer`] started with
    /// the registry.
    Token {
        /// The only user the token server knows.
        user: String,
        /// Their password.
        password: String,
        /// How long issued tokens are valid.
        token_ttl: Duration,
    },
}

/// A running `docker-registry` on `127.0.0.1`, killed and its storage
/// removed on drop.
///
/// Manifest and blob deletion are enabled. The registry logs at `warn` to
/// a file in its temporary directory, never to the test's output; the
/// tail of that log is part of the error when it fails to start.
#[derive(Debug)]
pub struct Registry {
    child: Option<Process>,
    addr: SocketAddr,
    auth: RegistryAuth,
    token: Option<TokenServer>,
    data: PathBuf,
    // Declared last so the directory goes after the process is dead.
    dir: TempDir,
}

impl Registry {
    /// Starts an anonymous registry.
    pub async fn start() -> Result<Self> {
        Self::start_with(RegistryAuth::None).await
    }

    /// Starts a registry guarded by `auth`, returning once `GET /v2/`
    /// answers (200, or 401 with authentication).
    pub async fn start_with(auth: RegistryAuth) -> Result<Self> {
        let bin = find_program(
            "HOIST_DOCKER_REGISTRY",
            &["/usr/bin/docker-registry"],
            "docker-registry",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("hoist-registry-")
            .tempdir()
            .map_err(io_err("create registry temp dir"))?;
        let data = dir.path().join("data");
        fs::create_dir_all(&data)?;
        let (auth_yaml, token) = auth_config(&auth, dir.path()).await?;
        let log_path = dir.path().join("registry.log");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addr = net::free_addr()?;
            let config = dir.path().join("config.yml");
            fs::write(&config, config_yaml(&data, addr, &auth_yaml))?;
            let log = fs::File::create(&log_path)?;
            let mut child = Process(
                Command::new(&bin)
                    .arg("serve")
                    .arg(&config)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?.into_file())
                    .stderr(log.into_file())
                    .spawn()
                    .map_err(io_err(format!("spawn {}", bin.display())))?,
            );
            match wait_ready(&mut child.0, addr).await {
                Ok(()) => {
                    return Ok(Self {
                        child: Some(child),
                        addr,
                        auth,
                        token,
                        data,
                        dir,
                    });
                }
                Err(reason) => {
                    drop(child);
                    let log_tail = tail(&log_path, 40);
                    if !log_tail.contains("address already in use") || attempt == PORT_ATTEMPTS {
                        return Err(Error::RegistryStart {
                            addr,
                            reason,
                            log_tail,
                        });
                    }
                }
            }
        }
    }

    /// The last `lines` lines of the registry's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }

    /// The registry's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// `127.0.0.1:PORT`, for image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The storage root (`storage.filesystem.rootdirectory`).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The token server of a [`RegistryAuth::Token`] registry.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }

    /// The user and password it accepts, when it requires any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match &self.auth {
            RegistryAuth::None => None,
            RegistryAuth::Basic { user, password } | RegistryAuth::Token { user, password, .. } => {
                Some((user, password))
            }
        }
    }

    /// `USER:PASSWORD` for skopeo's `--src-creds` / `--dest-creds`.
    pub fn creds_arg(&self) -> Option<String> {
        self.credentials().map(|(u, p)| format!("{u}:{p}"))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.0.try_wait(), Ok(None)))
    }

    /// Kills the registry now, for "registry down" tests. Its storage stays
    /// until the value is dropped.
    pub fn stop(&mut self) {
        self.child = None;
    }
}

/// Waits until `GET /v2/` on `addr` answers 200 or 401; the reason
/// otherwise.
async fn wait_ready(child: &mut Child, addr: SocketAddr) -> Result<(), String> {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Err(format!("it exited with {status}")),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot check on it: {e}")),
        }
        if let Some(200 | 401) = net::probe(addr, "/v2/").await {
            return Ok(());
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(format!("GET /v2/ did not answer within {START_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A child process killed when dropped, even when a start is abandoned
/// half-way (a cancelled future).
#[derive(Debug)]
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        // SIGKILL, then reap so no zombie is left; both are immediate.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn config_yaml(data: &Path, addr: SocketAddr, auth_yaml: &str) -> String {
    // YAML accepts JSON strings, which quote any path safely.
    let data = serde_json::to_string(&data.to_string_lossy()).expect("a string serializes");
    format!(
        "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: hoist-testkit-secret
{auth_yaml}"
    )
}

/// The `auth:` section for `auth`, writing the files it refers to into
/// `dir`, and the token server it needs.
async fn auth_config(auth: &RegistryAuth, dir: &Path) -> Result<(String, Option<TokenServer>)> {
    let quote =
        |p: &Path| serde_json::to_string(&p.to_string_lossy()).expect("a string serializes");
    match auth {
        RegistryAuth::None => Ok((String::new(), None)),
        RegistryAuth::Basic { user, password } => {
            let htpasswd = find_program("HOIST_HTPASSWD", &["/usr/bin/htpasswd"], "htpasswd")?;
            let out = tokio::process::Command::new(&htpasswd)
                .args(["-Bbn", user, password])
                .output()
                .await
                .map_err(io_err(format!("run {}", htpasswd.display())))?;
            if !out.status.success() {
                return Err(Error::Command {
                    command: format!("htpasswd -Bbn {user} ***"),
                    status: out.status.to_string(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
            let path = dir.join("htpasswd");
            fs::write(&path, &out.stdout)?;
            let yaml = format!(
                "auth:\n  htpasswd:\n    realm: hoist-testkit\n    path: {}\n",
                quote(&path)
            );
            Ok((yaml, None))
        }
        RegistryAuth::Token {
            user,
            password,
            token_ttl,
        } => {
            let server = TokenServer::start(user, password, *token_ttl).await?;
            let bundle = dir.join("token-ca.pem");
            fs::write(&bundle, server.cert_pem())?;
            let mut yaml = String::from("auth:\n  token:\n");
            let _ = writeln!(yaml, "    realm: {}", server.realm());
            let _ = writeln!(yaml, "    service: {SERVICE}");
            let _ = writeln!(yaml, "    issuer: {ISSUER}");
            let _ = writeln!(yaml, "    rootcertbundle: {}", quote(&bundle));
            Ok((yaml, Some(server)))
        }
    }
}

//! The build: [`Builder`] settings, [`FunctionSpec`] input and the phases
//! that turn them into a [`BuildOutput`] in the build store.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_layer::{LayerInfo, LayerWriter, WriteOptions};
use oci_model::{Descriptor, Digest, Layout, Manifest, Platform, Reference, Resolved, SourceImage};
use oci_push::Endpoint;
use registry_client::Client;
use sandbox_run::{Limits, SandboxConfig};
use serde::{Deserialize, Serialize};

use crate::base::{self, Base};
use crate::bytecode::{self, Bytecode, NoBytecode};
use crate::image::{self, ConfigInput, LayerDesc};
use crate::install;
use crate::lock::{self, LockedWheel, Req, ResolverSettings};
use crate::{Error, Policy, Result, io_at, wheels};

/// The label prefix unless another is given.
pub const DEFAULT_LABEL_PREFIX: &str = "dev.hoist.function";
/// Version of the dependency layer recipe, part of its cache key.
const LAYER_FORMAT: &str = "hoist-deps-layer-v2";
/// The runner placed at `/opt/hoist/runner.py`.
const RUNNER_PY: &str = include_str!("runner.py");

/// What to build.
///
/// The name is where the image is meant to go, not part of it: the same
/// function built under two tags is one image (one digest), as with
/// docker, ko and crane. Labels come from the fields given, never from
/// the name.
///
/// ```
/// use oci_build::FunctionSpec;
/// let mut spec = FunctionSpec::new(
///     "hello".into(),
///     "oci:/var/cache/base:3.11".parse()?,
///     "127.0.0.1:5000/fn/hello:v1".parse()?,
/// );
/// spec.version = Some("1.0.0".into());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FunctionSpec {
    /// The function directory: `user_function.py`, optional
    /// `requirements.txt` and other code files.
    pub dir: PathBuf,
    /// The base image: a registry reference or `oci:DIR[:TAG]`.
    pub base: Endpoint,
    /// The name of the result (see [`crate::naming::default_reference`]).
    pub name: Reference,
    /// The user the function belongs to (label), if any.
    pub user: Option<String>,
    /// The function's name (label and image title), if any.
    pub function: Option<String>,
    /// The function's version (label), if any.
    pub version: Option<String>,
    /// Python `X.Y` to assume when the base image has no interpreter the
    /// scan recognises; ignored otherwise.
    pub python_version: Option<String>,
}

impl FunctionSpec {
    /// The function in `dir` on `base`, meant to be pushed as `name`, with
    /// no labels of its own.
    pub fn new(dir: PathBuf, base: Endpoint, name: Reference) -> Self {
        Self {
            dir,
            base,
            name,
            user: None,
            function: None,
            version: None,
            python_version: None,
        }
    }
}

/// The role of a layer in the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A layer of the base image, reused by digest.
    Base,
    /// The installed requirements.
    Dependencies,
    /// The function's code and the runner.
    Code,
}

/// One layer of the built image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerReport {
    /// What the layer holds.
    pub role: Role,
    /// Its digest.
    pub digest: Digest,
    /// Its compressed size.
    pub size: u64,
    /// Whether it was already in the store (base and code layers) or in
    /// the layer cache (dependencies) rather than made by this build.
    pub reused: bool,
}

/// A phase of a build, for timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Checking the function.
    Validate,
    /// Reading the base image.
    Base,
    /// Resolving requirements (zero on a cached lock).
    Resolve,
    /// Fetching wheels.
    Wheels,
    /// Installing wheels into the dependency layer.
    Install,
    /// Writing the code layer.
    Code,
    /// Byte-compiling the dependency and code layers' modules (zero when
    /// nothing is to compile).
    Bytecode,
    /// Writing config and manifest.
    Config,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Validate => "validate",
            Self::Base => "base",
            Self::Resolve => "resolve",
            Self::Wheels => "wheels",
            Self::Install => "install",
            Self::Code => "code",
            Self::Bytecode => "bytecode",
            Self::Config => "config",
        })
    }
}

/// What a build made.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BuildOutput {
    /// The image, read from the build store: push it with
    /// `oci_push::Copier::push`, which mounts the base layers from a
    /// registry base's repository.
    pub image: SourceImage<Layout>,
    /// The build store: an OCI image layout holding the image.
    pub store: PathBuf,
    /// The image's tag in the store (`oci:STORE:TAG` names it).
    pub store_tag: String,
    /// The name the image is meant to be pushed as.
    pub reference: Reference,
    /// The manifest digest, the same for the same inputs everywhere.
    pub manifest_digest: Digest,
    /// The manifest size.
    pub manifest_size: u64,
    /// The manifest media type (OCI, or Docker schema 2 on a Docker base).
    pub manifest_media_type: String,
    /// The config digest.
    pub config_digest: Digest,
    /// The digest of the base image manifest (the platform's).
    pub base_digest: Digest,
    /// A registry base, pinned by digest (`None` for a layout base).
    pub base: Option<Reference>,
    /// What the base offered.
    pub facts: crate::BaseFacts,
    /// Every layer, base first.
    pub layers: Vec<LayerReport>,
    /// The locked packages (empty without requirements).
    pub packages: Vec<LockedWheel>,
    /// Whether the dependency and code layers carry bytecode.
    pub bytecode: Bytecode,
    /// Config plus layer sizes, in bytes.
    pub image_size: u64,
    /// Time spent in each phase, in order.
    pub phases: Vec<(Phase, Duration)>,
}

impl BuildOutput {
    /// The store image as a copy source, `oci:STORE:TAG`.
    pub fn store_endpoint(&self) -> Endpoint {
        Endpoint::Layout {
            dir: self.store.clone(),
            tag: Some(self.store_tag.clone()),
        }
    }
}

/// `$XDG_CACHE_HOME/hoist`, else `$HOME/.cache/hoist`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let non_empty = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    non_empty("XDG_CACHE_HOME")
        .map(|d| d.join("hoist"))
        .or_else(|| non_empty("HOME").map(|h| h.join(".cache").join("hoist")))
}

/// Builds function images. Cheap to clone; one builder serves many builds
/// (concurrent builds share the cache safely: every entry is written to a
/// temporary file and renamed).
#[derive(Clone)]
pub struct Builder {
    pub(crate) client: Client,
    http: reqwest::Client,
    pub(crate) cache_dir: PathBuf,
    policy: Policy,
    resolver: ResolverSettings,
    pub(crate) epoch: u64,
    label_prefix: String,
    pub(crate) platform: Platform,
    pub(crate) sandbox: Option<SandboxConfig>,
    bytecode_limits: Limits,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("cache_dir", &self.cache_dir)
            .field("resolver", &self.resolver)
            .field("epoch", &self.epoch)
            .field("label_prefix", &self.label_prefix)
            .field("platform", &self.platform)
            .field("sandbox", &self.sandbox)
            .field("bytecode_limits", &self.bytecode_limits)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// A builder with the defaults: cache in [`default_cache_dir`] (a build
    /// fails with [`Error::NoCacheDir`] when there is none and
    /// [`cache_dir`](Self::cache_dir) gave none), the
    /// default [`Policy`], uv from `HOIST_UV` or `PATH`, the epoch from
    /// `SOURCE_DATE_EPOCH` (else 0), labels under
    /// [`DEFAULT_LABEL_PREFIX`], platform linux/amd64, and no sandbox, so
    /// no bytecode ([`Builder::sandbox`]).
    pub fn new(client: Client) -> Result<Self> {
        let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.trim().is_empty() => v
                .trim()
                .parse()
                .map_err(|_| Error::InvalidEpoch { value: v.clone() })?,
            _ => 0,
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::custom(|a| {
                // Wheel hosts redirect within HTTPS at most a few times.
                if a.url().scheme() != "https" || a.previous().len() >= 5 {
                    a.stop()
                } else {
                    a.follow()
                }
            }))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Download {
                url: String::new(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            client,
            http,
            // An empty path means "none": `build` then fails with
            // `NoCacheDir` unless `cache_dir` gave one.
            cache_dir: default_cache_dir().unwrap_or_default(),
            policy: Policy::default(),
            resolver: ResolverSettings::from_env(),
            epoch,
            label_prefix: DEFAULT_LABEL_PREFIX.into(),
            platform: Platform::default(),
            sandbox: None,
            bytecode_limits: Limits::default(),
        })
    }

    /// Uses `dir` for every cache and the build store.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = dir.into();
        self
    }

    /// Validates functions with `policy`.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Resolves requirements with these settings.
    pub fn resolver(mut self, resolver: ResolverSettings) -> Self {
        self.resolver = resolver;
        self
    }

    /// Resolves from uv's cache only.
    pub fn offline(mut self, offline: bool) -> Self {
        self.resolver.offline = offline;
        self
    }

    /// Always asks the package index instead of trying uv's cache first
    /// (see [`ResolverSettings::refresh`]).
    pub fn refresh(mut self, refresh: bool) -> Self {
        self.resolver.refresh = refresh;
        self
    }

    /// Stamps every time in the image (mtimes, `created`) with `epoch`.
    pub fn epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// Puts the function labels under `prefix` (`<prefix>.id`, …).
    pub fn label_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.label_prefix = prefix.into();
        self
    }

    /// Builds for `platform` (picked from a base index).
    pub fn platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// Byte-compiles the dependency and code layers' modules with the base
    /// image's own interpreter, run in this sandbox over the build's layers
    /// (see the crate docs). Without a sandbox a build makes no bytecode and
    /// says so in [`BuildOutput::bytecode`]. Bytecode is part of the
    /// image: a build with it and one without give different digests.
    ///
    /// The sandbox is not swept here: a process sweeps once, at its start
    /// ([`sandbox_run::Sandbox::sweep`]).
    pub fn sandbox(mut self, config: SandboxConfig) -> Self {
        self.sandbox = Some(config);
        self
    }

    /// Runs each compile with these limits (default: the seeds' 2 GiB, 2
    /// CPUs, 256 pids, 512 MiB `/tmp` and a 300 s timeout).
    pub fn bytecode_limits(mut self, limits: Limits) -> Self {
        self.bytecode_limits = limits;
        self
    }

    /// The cache directory.
    pub fn cache_path(&self) -> &Path {
        &self.cache_dir
    }

    /// The build store (an OCI image layout).
    pub fn store_path(&self) -> PathBuf {
        self.cache_dir.join("store")
    }

    /// Builds the image of `spec` into the build store.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use oci_build::{Builder, FunctionSpec, naming};
    /// let client = registry_client::Client::builder().build()?;
    /// let builder = Builder::new(client)?.cache_dir("/var/cache/hoist");
    /// let dir = std::path::PathBuf::from("hello");
    /// let name = naming::default_reference(
    ///     "127.0.0.1:5000", "acme", "alice", "hello", "1", &naming::code_sha8(&dir)?,
    /// )?;
    /// let mut spec = FunctionSpec::new(dir, "127.0.0.1:5000/python:3.11".parse()?, name.clone());
    /// spec.version = Some("1".into());
    /// let out = builder.build(&spec).await?;
    /// // Push with oci-push: the base layers are mounted from the base's
    /// // repository, only the new layers are uploaded.
    /// let copier = oci_push::Copier::new(registry_client::Client::builder().build()?);
    /// copier.push(&out.image, &oci_push::Endpoint::Registry(name)).await?;
    /// println!("{}", out.manifest_digest);
    /// # Ok(()) }
    /// ```
    pub async fn build(&self, spec: &FunctionSpec) -> Result<BuildOutput> {
        if self.cache_dir.as_os_str().is_empty() {
            return Err(Error::NoCacheDir);
        }
        let mut phases = Vec::with_capacity(8);
        let mut clock = Clock::start();

        // validate
        let dir = spec.dir.clone();
        let policy = self.policy.clone();
        let checked = crate::blocking("validating the function", move || {
            Ok(function_check::check_dir(&dir, &policy)?)
        })
        .await?;
        if !checked.problems.is_empty() {
            return Err(Error::Invalid {
                problems: checked.problems,
            });
        }
        phases.push((Phase::Validate, clock.lap()));

        // base
        let store = Layout::create(self.store_path())?;
        let base = base::load(
            &self.client,
            &spec.base,
            &self.platform,
            &store,
            &self.cache_dir,
            spec.python_version.as_deref(),
        )
        .await?;
        phases.push((Phase::Base, clock.lap()));
        let family = base.manifest.family();
        let types = image::types(family);

        // dependencies
        let reqs: Vec<Req> = checked
            .requirements
            .iter()
            .map(|r| Req {
                name: r.name.clone(),
                requirement: r.requirement.clone(),
                hashes: r.hashes.clone(),
            })
            .collect();
        let (mut deps, packages) = if reqs.is_empty() {
            for p in [Phase::Resolve, Phase::Wheels, Phase::Install] {
                phases.push((p, Duration::ZERO));
            }
            (None, Vec::new())
        } else {
            let (deps, packages) = self
                .dependency_layer(&spec.base, &base, &reqs, &store, &mut phases, &mut clock)
                .await?;
            (Some(deps), packages)
        };

        // code
        let mut files = Vec::with_capacity(checked.files.len());
        for rel in &checked.files {
            let path = spec.dir.join(rel);
            let bytes = fs_err::read(&path).map_err(io_at(&path))?;
            files.push((rel.clone(), bytes));
        }
        phases.push((Phase::Code, clock.lap()));

        // bytecode
        let (bytecode, compiled) = self.bytecode(&store, &base, deps.as_mut(), &files).await?;
        phases.push((Phase::Bytecode, clock.lap()));

        // layers
        let deps = match deps {
            None => None,
            Some(d) => {
                let layer = self.finish_dependency_layer(d, &store).await?;
                add_time(&mut phases, Phase::Install, clock.lap());
                Some(layer)
            }
        };
        let code = self.code_layer(&files, &compiled, &store)?;
        add_time(&mut phases, Phase::Code, clock.lap());

        // config and manifest
        let created = oci_model::rfc3339(self.epoch);
        let base_digest = base.manifest.digest().clone();
        let labels = self.labels(spec, &base, &created);
        let mut ours = Vec::new();
        let mut history = Vec::new();
        if let Some(d) = &deps {
            ours.push((Role::Dependencies, d));
            let names: Vec<String> = packages
                .iter()
                .map(|p| format!("{}=={}", p.name, p.version))
                .collect();
            history.push((
                d.diff_id.clone(),
                format!("hoist: install {}", names.join(" ")),
            ));
        }
        ours.push((Role::Code, &code));
        history.push((
            code.diff_id.clone(),
            "hoist: function code and runner".to_owned(),
        ));
        let base_diff_ids = base
            .config
            .rootfs
            .as_ref()
            .map(|r| r.diff_ids.clone())
            .unwrap_or_default();
        let config = image::config_bytes(&ConfigInput {
            base: &base.config,
            base_diff_ids: &base_diff_ids,
            created: &created,
            interpreter: &base.facts.interpreter,
            labels: &labels,
            layers: history,
        });
        let config_digest = store.write_blob(&config)?;
        let config_desc = Descriptor {
            media_type: types.config.to_owned(),
            digest: config_digest.clone(),
            size: config.len() as u64,
            platform: None,
        };
        let mut layer_descs = image::base_layers(base.manifest.bytes());
        let mut layers: Vec<LayerReport> = base
            .layers
            .iter()
            .map(|(d, reused)| LayerReport {
                role: Role::Base,
                digest: d.digest.clone(),
                size: d.size,
                reused: *reused,
            })
            .collect();
        for (role, l) in &ours {
            layer_descs.push(LayerDesc {
                media_type: types.layer.to_owned(),
                digest: l.digest.clone(),
                size: l.size,
                urls: None,
                annotations: None,
            });
            layers.push(LayerReport {
                role: *role,
                digest: l.digest.clone(),
                size: l.size,
                reused: l.reused,
            });
        }
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "org.opencontainers.image.created".to_owned(),
            created.clone(),
        );
        annotations.insert(
            "org.opencontainers.image.base.digest".to_owned(),
            base_digest.to_string(),
        );
        if let Some(name) = &base.name {
            annotations.insert(
                "org.opencontainers.image.base.name".to_owned(),
                name.clone(),
            );
        }
        let manifest = image::manifest_bytes(family, &config_desc, layer_descs, &annotations);
        let manifest_digest = store.write_blob(&manifest)?;
        let store_tag = store_tag(&spec.name);
        store.add_manifest(
            &Descriptor {
                media_type: types.manifest.to_owned(),
                digest: manifest_digest.clone(),
                size: manifest.len() as u64,
                platform: None,
            },
            Some(&store_tag),
        )?;
        phases.push((Phase::Config, clock.lap()));
        let image_size = config.len() as u64 + layers.iter().map(|l| l.size).sum::<u64>();
        let resolved = Resolved {
            reference: spec.name.with_digest(manifest_digest.clone()),
            manifest: Manifest::from_bytes(manifest.clone(), Some(types.manifest))?,
            index: None,
        };
        let mut image = SourceImage::with_config(store.clone(), resolved, config)?;
        if let Some(base_ref) = &base.reference {
            let base_layers = base.layers.iter().map(|(d, _)| d.digest.clone());
            image = image.with_mount_source(base_ref.clone(), base_layers);
        }
        Ok(BuildOutput {
            image,
            store: store.root().to_owned(),
            store_tag,
            reference: spec.name.clone(),
            manifest_digest,
            manifest_size: manifest.len() as u64,
            manifest_media_type: types.manifest.to_owned(),
            config_digest,
            base_digest,
            base: base.reference,
            facts: base.facts,
            layers,
            packages,
            bytecode,
            image_size,
            phases,
        })
    }

    fn labels(&self, spec: &FunctionSpec, base: &Base, created: &str) -> BTreeMap<String, String> {
        let p = &self.label_prefix;
        let oci = "org.opencontainers.image";
        let mut labels = BTreeMap::new();
        let mut put = |k: String, v: &str| {
            labels.insert(k, v.to_owned());
        };
        if let (Some(user), Some(function)) = (&spec.user, &spec.function) {
            put(format!("{p}.id"), &format!("{user}/{function}"));
        }
        if let Some(user) = &spec.user {
            put(format!("{p}.user"), user);
        }
        if let Some(function) = &spec.function {
            put(format!("{p}.function"), function);
            put(format!("{oci}.title"), function);
        }
        if let Some(version) = &spec.version {
            put(format!("{p}.version"), version);
            put(format!("{oci}.version"), version);
        }
        put(format!("{p}.created"), created);
        // The runner shipped in the code layer can serve a warm sandbox.
        put(
            function_run::SERVE_LABEL.to_owned(),
            function_run::SERVE_PROTOCOL,
        );
        put(format!("{oci}.created"), created);
        put(
            format!("{oci}.base.digest"),
            base.manifest.digest().as_str(),
        );
        if let Some(name) = &base.name {
            put(format!("{oci}.base.name"), name);
        }
        labels
    }

    async fn dependency_layer(
        &self,
        base_endpoint: &Endpoint,
        base: &Base,
        reqs: &[Req],
        store: &Layout,
        phases: &mut Vec<(Phase, Duration)>,
        clock: &mut Clock,
    ) -> Result<(Deps, Vec<LockedWheel>)> {
        let facts = &base.facts;
        let libc = facts
            .libc
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), ToString::to_string);
        let platform = facts.platform_tag().ok_or_else(|| Error::UnsupportedLibc {
            base: base_endpoint.to_string(),
            libc: libc.clone(),
        })?;
        let key = lock::lock_key(reqs, &facts.python_version, &platform, &libc);
        let lock_path = self.cache_dir.join("locks").join(format!("{key}.json"));
        let wheels = match lock::read_cached(&lock_path) {
            Some(w) => w,
            None => {
                let w = lock::resolve(
                    &self.resolver,
                    reqs,
                    &facts.python_version,
                    &platform,
                    &self.cache_dir.join("uv"),
                )
                .await?;
                lock::write_cached(&lock_path, &w)?;
                w
            }
        };
        // A hand-edited lock entry is caught too.
        lock::check_hashes(reqs, &wheels)?;
        phases.push((Phase::Resolve, clock.lap()));

        let with_bytecode = self.bytecode_settings(base).is_ok();
        let layer_key = layer_key(
            base.manifest.digest(),
            &facts.interpreter,
            &wheels,
            self.epoch,
            with_bytecode,
        );
        let layer_path = self
            .cache_dir
            .join("layers")
            .join(format!("{layer_key}.json"));
        if let Some(cached) = read_layer_cache(&layer_path)
            && store.has_blob(&cached.digest, Some(cached.size))
        {
            phases.push((Phase::Wheels, Duration::ZERO));
            phases.push((Phase::Install, clock.lap()));
            return Ok((
                Deps::Reused {
                    layer: NewLayer {
                        digest: cached.digest,
                        size: cached.size,
                        diff_id: cached.diff_id,
                        reused: true,
                    },
                    taken: bytecode::Taken {
                        modules: cached.modules,
                        uncompiled: cached.uncompiled,
                    },
                },
                wheels,
            ));
        }
        let paths = wheels::fetch_all(&self.http, &self.cache_dir.join("wheels"), &wheels).await?;
        phases.push((Phase::Wheels, clock.lap()));

        let tmp_dir = self.cache_dir.join("tmp");
        fs_err::create_dir_all(&tmp_dir).map_err(io_at(&tmp_dir))?;
        let staging = tempfile::tempdir_in(&tmp_dir).map_err(io_at(&tmp_dir))?;
        let interpreter = facts.interpreter.clone();
        let staging = crate::blocking("installing wheels", move || {
            for p in &paths {
                install::install_wheel(p, staging.path(), &interpreter)?;
            }
            Ok(staging)
        })
        .await?;
        phases.push((Phase::Install, clock.lap()));
        Ok((
            Deps::Staged {
                staging,
                entry: layer_path,
                taken: None,
            },
            wheels,
        ))
    }

    /// The settings to compile with for `base`, or why there is no
    /// bytecode.
    fn bytecode_settings(
        &self,
        base: &Base,
    ) -> std::result::Result<bytecode::Settings, NoBytecode> {
        let sandbox = self.sandbox.clone().ok_or(NoBytecode::NoSandbox)?;
        bytecode::check(&base.facts.python_version, base.interpreter_found)?;
        Ok(bytecode::Settings {
            sandbox,
            limits: self.bytecode_limits.clone(),
        })
    }

    /// Compiles what needs it, in one sandbox run: the staged dependency
    /// layer and the code files whose bytecode is not cached. Returns the
    /// record and the code files' bytecode (path under the function
    /// directory, bytes).
    async fn bytecode(
        &self,
        store: &Layout,
        base: &Base,
        mut deps: Option<&mut Deps>,
        files: &[(PathBuf, Vec<u8>)],
    ) -> Result<(Bytecode, Vec<(PathBuf, Vec<u8>)>)> {
        let settings = match self.bytecode_settings(base) {
            Ok(s) => s,
            Err(reason) => return Ok((Bytecode::Skipped { reason }, Vec::new())),
        };
        let started = Instant::now();
        let facts = &base.facts;
        let tag = bytecode::cache_tag(&facts.python_version);
        let cache = self.cache_dir.join("bytecode");
        let mut compiled = Vec::new();
        let mut todo = Vec::new();
        for (rel, bytes) in files
            .iter()
            .filter(|(r, _)| r.extension().is_some_and(|e| e == "py"))
        {
            let Some(pyc) = bytecode::pyc_path(rel, &tag) else {
                continue;
            };
            let image_path = Path::new(image::FUNCTION_DIR).join(rel);
            let key = bytecode::code_key(
                base.manifest.digest(),
                &facts.interpreter,
                &image_path,
                bytes,
            );
            let cached = cache.join(format!("{key}.pyc"));
            match bytecode::read(&cached)? {
                Some(b) => compiled.push((pyc, b)),
                None => todo.push((rel, bytes, pyc, cached)),
            }
        }
        let mut code_taken = bytecode::Taken {
            modules: compiled.len() as u64,
            uncompiled: 0,
        };
        let staged_deps = match deps.as_deref() {
            Some(Deps::Staged { staging, .. }) => Some(staging.path().to_owned()),
            _ => None,
        };
        let mut compiled_now = 0;
        if !todo.is_empty() || staged_deps.is_some() {
            let tmp = self.cache_dir.join("tmp");
            fs_err::create_dir_all(&tmp).map_err(io_at(&tmp))?;
            let code_staging = tempfile::tempdir_in(&tmp).map_err(io_at(&tmp))?;
            for (rel, bytes, _, _) in &todo {
                let path = code_staging.path().join(FUNCTION_ROOT).join(rel);
                if let Some(parent) = path.parent() {
                    fs_err::create_dir_all(parent).map_err(io_at(parent))?;
                }
                fs_err::write(&path, bytes).map_err(io_at(&path))?;
            }
            let mut trees = Vec::new();
            if !todo.is_empty() {
                trees.push(bytecode::Tree {
                    root: code_staging.path(),
                    dir: FUNCTION_ROOT,
                });
            }
            if let Some(root) = &staged_deps {
                trees.push(bytecode::Tree {
                    root,
                    dir: install::SITE_PACKAGES,
                });
            }
            let run = bytecode::Run {
                settings: &settings,
                cache_dir: &self.cache_dir,
                store,
                base: base.manifest.digest(),
                platform: &self.platform,
                interpreter: &facts.interpreter,
                epoch: self.epoch,
            };
            let kept = bytecode::compile(run, &trees).await?;
            for (_, _, pyc, cached) in &todo {
                let from = kept.path().join(FUNCTION_ROOT).join(pyc);
                match bytecode::read(&from)? {
                    Some(b) => {
                        crate::write_atomic(cached, &b)?;
                        compiled.push((pyc.clone(), b));
                        code_taken.modules += 1;
                    }
                    None => code_taken.uncompiled += 1,
                }
            }
            compiled_now += todo.len() as u64;
            if let Some(root) = staged_deps {
                let t = crate::blocking("taking bytecode", move || {
                    bytecode::merge(&root, kept.path(), install::SITE_PACKAGES, &tag)
                })
                .await?;
                compiled_now += t.modules + t.uncompiled;
                if let Some(Deps::Staged { taken, .. }) = deps.as_deref_mut() {
                    *taken = Some(t);
                }
            }
        }
        let deps_taken = match deps.as_deref() {
            Some(Deps::Reused { taken, .. }) => *taken,
            Some(Deps::Staged { taken, .. }) => taken.unwrap_or_default(),
            None => bytecode::Taken::default(),
        };
        Ok((
            Bytecode::Compiled {
                modules: deps_taken.modules + code_taken.modules,
                uncompiled: deps_taken.uncompiled + code_taken.uncompiled,
                compiled_now,
                time: started.elapsed(),
            },
            compiled,
        ))
    }

    /// Writes a staged dependency layer into the store and records it in
    /// the layer cache; a reused one is returned as it is.
    async fn finish_dependency_layer(&self, deps: Deps, store: &Layout) -> Result<NewLayer> {
        let (staging, entry_path, taken) = match deps {
            Deps::Reused { layer, .. } => return Ok(layer),
            Deps::Staged {
                staging,
                entry,
                taken,
            } => (staging, entry, taken.unwrap_or_default()),
        };
        let store = store.clone();
        let epoch = self.epoch;
        let layer = crate::blocking("writing the dependency layer", move || {
            let mut w = LayerWriter::new(write_options(epoch));
            w.add_tree(staging.path(), "")?;
            write_layer(&store, w)
        })
        .await?;
        let entry = LayerCacheEntry {
            format: LAYER_FORMAT.into(),
            digest: layer.digest.clone(),
            size: layer.size,
            diff_id: layer.diff_id.clone(),
            modules: taken.modules,
            uncompiled: taken.uncompiled,
        };
        crate::write_atomic(
            &entry_path,
            &serde_json::to_vec(&entry).expect("serializable"),
        )?;
        Ok(layer)
    }

    /// The code layer: the function's files, their bytecode (paths under
    /// the function directory) and the runner.
    fn code_layer(
        &self,
        files: &[(PathBuf, Vec<u8>)],
        compiled: &[(PathBuf, Vec<u8>)],
        store: &Layout,
    ) -> Result<NewLayer> {
        let mut w = LayerWriter::new(write_options(self.epoch));
        for (rel, bytes) in files.iter().chain(compiled) {
            w.add_bytes(Path::new(FUNCTION_ROOT).join(rel), 0o644, bytes.clone())?;
        }
        w.add_bytes(image::RUNNER.trim_start_matches('/'), 0o644, RUNNER_PY)?;
        let (info, reused) = stream_layer(store, w)?;
        Ok(NewLayer {
            digest: info.digest,
            size: info.size,
            diff_id: info.diff_id,
            reused,
        })
    }
}

/// The function directory relative to the image root.
const FUNCTION_ROOT: &str = "opt/hoist/function";

/// The dependency layer of a build: reused from the layer cache, or staged
/// and not written yet (its bytecode is added first).
enum Deps {
    Reused {
        layer: NewLayer,
        taken: bytecode::Taken,
    },
    Staged {
        staging: tempfile::TempDir,
        /// Where its layer cache entry goes.
        entry: PathBuf,
        /// The bytecode taken into it, once compiled.
        taken: Option<bytecode::Taken>,
    },
}

/// Adds `d` to the time of `phase`, already recorded.
fn add_time(phases: &mut [(Phase, Duration)], phase: Phase, d: Duration) {
    if let Some((_, t)) = phases.iter_mut().find(|(p, _)| *p == phase) {
        *t += d;
    }
}

fn write_options(epoch: u64) -> WriteOptions {
    WriteOptions {
        mtime: epoch,
        ..WriteOptions::default()
    }
}

/// A layer this build wrote or reused.
#[derive(Clone, Debug)]
struct NewLayer {
    digest: Digest,
    size: u64,
    diff_id: Digest,
    reused: bool,
}

#[derive(Serialize, Deserialize)]
struct LayerCacheEntry {
    format: String,
    digest: Digest,
    size: u64,
    diff_id: Digest,
    /// Modules with bytecode in the layer, and without.
    modules: u64,
    uncompiled: u64,
}

fn read_layer_cache(path: &Path) -> Option<LayerCacheEntry> {
    let bytes = std::fs::read(path).ok()?;
    let e: LayerCacheEntry = serde_json::from_slice(&bytes).ok()?;
    (e.format == LAYER_FORMAT).then_some(e)
}

/// Streams a layer into the store through a temporary blob.
fn write_layer(store: &Layout, w: LayerWriter<'_>) -> Result<NewLayer> {
    let (info, _) = stream_layer(store, w)?;
    Ok(NewLayer {
        digest: info.digest,
        size: info.size,
        diff_id: info.diff_id,
        reused: false,
    })
}

/// Streams the layer `w` into the store through a temporary blob, so
/// memory stays bounded whatever its size; returns its digests and
/// whether the store held the blob already (the new copy is then
/// dropped, the stored one left alone).
pub(crate) fn stream_layer(store: &Layout, w: LayerWriter<'_>) -> Result<(LayerInfo, bool)> {
    let mut bw = std::io::BufWriter::with_capacity(256 * 1024, store.verified_blob_writer()?);
    let info = w.finish(&mut bw)?;
    let bw = bw.into_inner().map_err(|e| Error::Io {
        path: store.root().to_owned(),
        source: e.into_error(),
    })?;
    let present = store.has_blob(&info.digest, Some(info.size));
    if present {
        // Dropping the writer removes its temporary file.
        drop(bw);
    } else {
        bw.commit(Some(&info.digest))?;
    }
    Ok((info, present))
}

/// The dependency layer key: the wheels (name, version, sha256, sorted),
/// the base manifest digest and interpreter (scripts' shebangs and the
/// bytecode), the epoch (every mtime), whether it carries bytecode (and
/// by which recipe), and [`LAYER_FORMAT`].
pub(crate) fn layer_key(
    base: &Digest,
    interpreter: &str,
    wheels: &[LockedWheel],
    epoch: u64,
    with_bytecode: bool,
) -> String {
    let mut lines: Vec<String> = wheels
        .iter()
        .map(|w| format!("{}\t{}\t{}", w.name, w.version, w.sha256))
        .collect();
    lines.sort();
    let bytecode = if with_bytecode {
        bytecode::FORMAT
    } else {
        "none"
    };
    let text = format!(
        "{LAYER_FORMAT}\nbase={base}\ninterpreter={interpreter}\nepoch={epoch}\nbytecode={bytecode}\n{}\n",
        lines.join("\n")
    );
    Digest::of(text.as_bytes()).hex().to_owned()
}

/// The store tag of a build: repository (with `/` as `_`) and tag, so each
/// function version has its own entry; long names end in a hash instead.
pub(crate) fn store_tag(reference: &Reference) -> String {
    let tag = reference.tag().unwrap_or("untagged");
    let text = format!("{}_{tag}", reference.repository().replace('/', "_"));
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.len() <= 128 {
        clean
    } else {
        let hash = Digest::of(reference.to_string().as_bytes());
        format!("{}-{}", &clean[..100], hash.short(16))
    }
}

struct Clock(Instant);

impl Clock {
    fn start() -> Self {
        Self(Instant::now())
    }

    fn lap(&mut self) -> Duration {
        let now = Instant::now();
        let d = now - self.0;
        self.0 = now;
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_stream_into_the_store_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Layout::create(dir.path().join("store")).unwrap();
        let layer = || {
            let mut w = LayerWriter::new(write_options(0));
            w.add_bytes("app/a.txt", 0o644, b"a".to_vec()).unwrap();
            w
        };
        let (info, present) = stream_layer(&store, layer()).unwrap();
        assert!(!present);
        let path = store.blob_path(&info.digest);
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let first = inode(&path);
        // The same layer again: the stored blob is left as it is, and no
        // temporary file stays behind.
        let (again, present) = stream_layer(&store, layer()).unwrap();
        assert!(present);
        assert_eq!(again, info);
        assert_eq!(inode(&path), first);
        let blobs = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(blobs, 1);
    }

    fn wheel(name: &str, sha: char) -> LockedWheel {
        LockedWheel {
            name: name.into(),
            version: "1.0".into(),
            url: format!("https://x/{name}-1.0-py3-none-any.whl"),
            filename: format!("{name}-1.0-py3-none-any.whl"),
            size: 1,
            sha256: sha.to_string().repeat(64),
        }
    }

    #[test]
    fn layer_key_is_stable_and_sensitive() {
        let base = Digest::of(b"base");
        let a = [wheel("six", 'a'), wheel("attrs", 'b')];
        let b = [wheel("attrs", 'b'), wheel("six", 'a')];
        let key = |base: &Digest, interpreter: &str, wheels: &[LockedWheel]| {
            layer_key(base, interpreter, wheels, 0, true)
        };
        let k = key(&base, "/usr/bin/python3.11", &a);
        assert_eq!(k, key(&base, "/usr/bin/python3.11", &b));
        assert_ne!(k, key(&Digest::of(b"other"), "/usr/bin/python3.11", &a));
        assert_ne!(k, key(&base, "/usr/local/bin/python3.11", &a));
        assert_ne!(
            k,
            key(
                &base,
                "/usr/bin/python3.11",
                &[wheel("six", 'c'), wheel("attrs", 'b')]
            )
        );
        assert_ne!(k, layer_key(&base, "/usr/bin/python3.11", &a, 1, true));
        assert_ne!(k, layer_key(&base, "/usr/bin/python3.11", &a, 0, false));
    }

    #[test]
    fn store_tags_are_valid_layout_tags() {
        let r: Reference = "reg:5000/acme/functions/user-a-func-b:v1-deadbeef"
            .parse()
            .unwrap();
        assert_eq!(store_tag(&r), "acme_functions_user-a-func-b_v1-deadbeef");
        let long = format!("reg/{}:v1", "a".repeat(200));
        let t = store_tag(&long.parse().unwrap());
        assert!(t.len() <= 128, "{t}");
        let e: Endpoint = format!("oci:/s:{t}").parse().unwrap();
        assert!(matches!(e, Endpoint::Layout { tag: Some(_), .. }));
    }
}

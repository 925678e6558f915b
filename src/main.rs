//! `hoist`: the command-line face of the hoist crates — copy, inspect,
//! digest, list tags and delete, against registries and OCI layouts;
//! validate and build function images; pull through a layer cache and run
//! images in a sandbox.

// A command-line tool prints its results.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod backup;
mod base;
mod build;
mod db;
mod gc;
mod mirror;
mod progress;
mod referrers;
mod run;
mod sbom;
mod scan;
mod sign;
mod smoke;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use oci_model::{Platform, Reference};
use oci_push::{Copier, Endpoint};
use registry_client::{Client, ClientBuilder, CredentialStore};

/// Daemonless OCI toolkit: copy and inspect images in registries and OCI
/// layout directories.
#[derive(Parser)]
#[command(name = "hoist", version, about, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
pub(crate) struct Global {
    /// Use plain HTTP: for every registry (`--plain-http`) or for one host
    /// (`--plain-http=HOST[:PORT]`, repeatable). Loopback hosts always use
    /// plain HTTP.
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "*", value_name = "HOST")]
    pub(crate) plain_http: Vec<String>,
    /// Docker config.json to read credentials from (default:
    /// $DOCKER_CONFIG/config.json or ~/.docker/config.json).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) authfile: Option<PathBuf>,
    /// How many blobs to move at once.
    #[arg(
        short = 'j',
        long,
        global = true,
        default_value_t = 8,
        value_name = "N"
    )]
    pub(crate) jobs: usize,
    /// Upload blobs in chunks of this many bytes instead of one request.
    #[arg(long, global = true, value_name = "BYTES")]
    pub(crate) chunk_size: Option<u64>,
    /// Registry timeout for connecting and for any stalled read, in seconds.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECS")]
    pub(crate) registry_timeout: u64,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Log requests, retries, failovers and sandbox steps to stderr.
    #[arg(short, long, global = true)]
    pub(crate) verbose: bool,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Registry(RegistryCommand),
    /// Check a function directory: Python syntax, denied imports and
    /// calls, sizes, requirements. Prints every problem as FILE:LINE:COL.
    Validate(build::ValidateArgs),
    /// Build a function image (base + dependency layer + code layer) and
    /// push it, or write it to an OCI layout.
    Build(Box<build::BuildArgs>),
    /// Pull an image through the layer cache (failing over to mirrors) and
    /// run a command in it, sandboxed.
    Run(run::RunArgs),
    /// Run a function image's handler on an inputs file; prints its output.
    Invoke(run::InvokeArgs),
    /// Start an image's own command in the sandbox and wait for its health
    /// endpoint to answer 200; on failure print its logs and exit 1.
    Smoke(smoke::SmokeArgs),
    /// Inspect and maintain the layer cache.
    Cache(run::CacheArgs),
    /// List an image's packages (dpkg, apk, Python) from its layers,
    /// without running it: an SPDX or CycloneDX SBOM, or a table.
    Sbom(sbom::SbomArgs),
    /// List the artifacts attached to an image (SBOMs, reports,
    /// signatures): its OCI referrers.
    Referrers(referrers::ReferrersArgs),
    /// Attach a file to an image as an OCI artifact (`subject`).
    Attach(referrers::AttachArgs),
    /// Write a registry's metadata (repositories, tags, digests, labels,
    /// referrers) as JSON to an object store, or `--check` a backup
    /// against the registry.
    Backup(backup::BackupArgs),
    /// Match an image's packages against the OSV database (`hoist db
    /// import`) and judge them by a policy: exit 0 pass or warn, 1 reject,
    /// 2 error. A table, JSON or SARIF 2.1.0.
    Scan(Box<scan::ScanArgs>),
    /// Make base images: `hoist base debian` from Debian packages.
    Base(base::BaseArgs),
    /// The OSV advisory database on local disk: `import`, `status`.
    Db(db::DbArgs),
    /// cosign-compatible key pairs: `hoist key generate`.
    Key(sign::KeyArgs),
    /// Sign an image (by digest) with a cosign private key: the signature
    /// goes to its `sha256-<hex>.sig` tag, beside any others.
    Sign(sign::SignArgs),
    /// Verify an image's cosign signatures with a public key; exit 1 when
    /// none verifies.
    Verify(sign::VerifyArgs),
    /// Copy the most used images (or a list) from a primary registry to a
    /// secondary one, digests unchanged, skipping those already there.
    Mirror(mirror::MirrorArgs),
    /// Delete images a retention policy no longer keeps (function images
    /// unused, beyond the newest versions, of deleted functions; stale
    /// `latest` tags); base images are never deleted.
    Gc(gc::GcArgs),
    /// Run the function platform in one process: the HTTP API and a
    /// worker, on SQLite, a local object directory and an OCI layout
    /// (runs the `hoist-serve` binary installed beside this one; `hoist
    /// serve --help` lists its flags).
    #[command(disable_help_flag = true)]
    Serve {
        /// `hoist-serve`'s arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<std::ffi::OsString>,
    },
}

/// The registry verbs.
#[derive(Subcommand)]
enum RegistryCommand {
    /// Copy an image: SRC and DST are references or oci:DIR[:TAG].
    Copy {
        /// Source image.
        src: Endpoint,
        /// Destination.
        dst: Endpoint,
        /// Copy only this platform out of an index (default: the whole index).
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<Platform>,
        /// Also copy the image's attachments: referrers and cosign
        /// `sha256-<hex>.sig|.att|.sbom` tags, digests unchanged.
        #[arg(long)]
        referrers: bool,
        /// Replace an immutable image (a base) that holds the destination tag.
        #[arg(long)]
        force: bool,
    },
    /// Print an image's manifest (or, with --config, its config).
    Inspect {
        /// Image reference or oci:DIR[:TAG].
        image: Endpoint,
        /// Print the config instead of the manifest.
        #[arg(long)]
        config: bool,
        /// Resolve an index to this platform (for --config default linux/amd64).
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<Platform>,
    },
    /// Print an image's manifest digest.
    Digest {
        /// Image reference or oci:DIR[:TAG].
        image: Endpoint,
        /// Resolve an index to this platform's manifest.
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<Platform>,
    },
    /// List a repository's tags.
    Tags {
        /// Repository, e.g. registry.example/team/app.
        repository: String,
    },
    /// Delete a manifest (a tag is resolved to its digest first).
    Delete {
        /// Image reference.
        image: Reference,
    },
}

/// `hoist serve ARGS`: runs `hoist-serve ARGS` from this binary's
/// directory, in this process's place.
fn serve(args: &[std::ffi::OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().ok();
    let Some(server) = exe
        .as_deref()
        .and_then(std::path::Path::parent)
        .map(|dir| dir.join("hoist-serve"))
        .filter(|p| p.is_file())
    else {
        eprintln!(
            "hoist: serve runs the hoist-serve binary, which is not beside {} \
             (cargo build --bins builds it)",
            exe.as_deref()
                .map_or("hoist".into(), |p| p.display().to_string())
        );
        return ExitCode::FAILURE;
    };
    let err = std::process::Command::new(&server).args(args).exec();
    eprintln!("hoist: run {}: {err}", server.display());
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    // The sandbox launcher must start before any thread exists: it forks
    // the container.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == run::LAUNCHER_ARG)
    {
        sandbox_run::launcher_main();
    }
    let cli = Cli::parse();
    if cli.global.verbose {
        tracing_subscriber::fmt()
            .with_env_filter(
                "hoist=debug,registry_client=debug,oci_push=debug,oci_build=debug,\
                 registry_failover=debug,layer_cache=debug,sandbox_run=debug",
            )
            .with_writer(std::io::stderr)
            .init();
    }
    // Running a container is one pull and one wait: worker threads would
    // only add start-up time (blocking work has its own pool either way).
    let mut builder = match cli.command {
        Command::Run(_) | Command::Invoke(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hoist: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hoist: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error chain joined with ": " on one line. Library errors often
/// repeat their source's text in their own message; a link already said
/// by the one before it is left out.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for link in e.chain() {
        let text = link.to_string().replace('\n', " ");
        if !previous.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        previous = text;
    }
    out
}

fn client_builder(g: &Global) -> Result<ClientBuilder> {
    let credentials = CredentialStore::from_docker_config(g.authfile.as_deref())?;
    let mut builder = Client::builder()
        .credentials(credentials)
        .chunk_size(g.chunk_size)
        .connect_timeout(Duration::from_secs(g.registry_timeout))
        .read_timeout(Duration::from_secs(g.registry_timeout));
    for host in &g.plain_http {
        builder = if host == "*" {
            builder.plain_http_all(true)
        } else {
            builder.plain_http_host(host)
        };
    }
    Ok(builder)
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    let builder = client_builder(g)?;
    match cli.command {
        Command::Validate(args) => {
            return Ok(if build::validate(g, args)? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Build(args) => build::build(g, builder.build()?, *args).await?,
        Command::Run(args) => return run::run(g, builder, args).await,
        Command::Invoke(args) => return run::invoke(g, builder, args).await,
        Command::Cache(args) => return run::cache(g, args).await,
        Command::Base(args) => base::base(g, builder.build()?, args).await?,
        Command::Db(args) => db::db(g, args)?,
        Command::Mirror(args) => return mirror::mirror(g, builder.build()?, args).await,
        Command::Gc(args) => return gc::gc(g, builder.build()?, args).await,
        Command::Smoke(args) => return smoke::smoke(g, builder, args).await,
        Command::Sbom(args) => return sbom::sbom(g, builder, args).await,
        Command::Backup(args) => return backup::backup(g, builder.build()?, args).await,
        Command::Referrers(args) => referrers::referrers(g, builder.build()?, args).await?,
        Command::Attach(args) => referrers::attach(g, builder.build()?, args).await?,
        Command::Scan(args) => return Ok(scan::scan(g, builder, *args).await),
        Command::Key(args) => sign::key(args)?,
        Command::Sign(args) => sign::sign(g, builder.build()?, args).await?,
        Command::Verify(args) => return sign::verify(g, builder.build()?, args).await,
        Command::Serve { args } => return Ok(serve(&args)),
        Command::Registry(command) => registry(g, builder.build()?, command).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The registry verbs: copy, inspect, digest, tags, delete.
async fn registry(g: &Global, client: Client, command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Copy {
            src,
            dst,
            platform,
            referrers,
            force,
        } => {
            // An immutable image under the destination tag stays unless
            // forced: one HEAD when the tag is free.
            if let Endpoint::Registry(r) = &dst
                && !force
                && client.head_manifest(r).await?.is_some()
            {
                let new = oci_push::manifest(&client, &src, platform.as_ref())
                    .await
                    .with_context(|| format!("read {src}"))?;
                registry_ops::check_overwrite(&client, r, new.digest()).await?;
            }
            let show_progress = !g.quiet && !g.json && std::io::stderr().is_terminal();
            let mut copier = Copier::new(client)
                .jobs(g.jobs)
                .platform(platform)
                .referrers(referrers);
            let bar = show_progress.then(progress::Bar::new);
            if let Some(bar) = &bar {
                copier = copier.progress(bar.sink());
            }
            let report = copier
                .copy(&src, &dst)
                .await
                .with_context(|| format!("copy {src} to {dst}"))?;
            if let Some(bar) = bar {
                bar.finish();
            }
            let digest = report.digest.clone().expect("a finished copy has a digest");
            if g.json {
                let value = serde_json::json!({
                    "source": src.to_string(),
                    "destination": dst.to_string(),
                    "report": report,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else if !g.quiet {
                match &dst {
                    Endpoint::Registry(r) => println!("{}@{digest}", r.name()),
                    Endpoint::Layout { .. } => println!("{dst}@{digest}"),
                }
            }
        }
        RegistryCommand::Inspect {
            image,
            config,
            platform,
        } => {
            let bytes = if config {
                oci_push::config(&client, &image, platform.as_ref()).await
            } else {
                oci_push::manifest(&client, &image, platform.as_ref())
                    .await
                    .map(|m| m.bytes().to_vec())
            }
            .with_context(|| format!("inspect {image}"))?;
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).context("the document is not JSON")?;
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        RegistryCommand::Digest { image, platform } => {
            let m = oci_push::manifest(&client, &image, platform.as_ref())
                .await
                .with_context(|| format!("digest {image}"))?;
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({ "digest": m.digest(), "mediaType": m.media_type(), "size": m.bytes().len() })
                );
            } else {
                println!("{}", m.digest());
            }
        }
        RegistryCommand::Tags { repository } => {
            let r = Reference::parse(&repository)?;
            let tags = client
                .list_tags(&r)
                .await
                .with_context(|| format!("tags {}", r.name()))?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&tags)?);
            } else {
                for t in tags {
                    println!("{t}");
                }
            }
        }
        RegistryCommand::Delete { image } => {
            let digest = client
                .delete_manifest(&image)
                .await
                .with_context(|| format!("delete {image}"))?;
            if g.json {
                println!("{}", serde_json::json!({ "deleted": digest }));
            } else if !g.quiet {
                println!("deleted {}@{digest}", image.name());
            }
        }
    }
    Ok(())
}

//! `hoist validate` and `hoist build`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use oci_build::{Builder, Bytecode, FunctionSpec, Policy, Problem, naming};
use oci_model::{Platform, Reference};
use oci_push::{Copier, Endpoint};
use registry_client::Client;

use crate::{Global, progress, run, scan, smoke};

/// Options shared by `validate` and `build`.
#[derive(Args)]
pub(crate) struct PolicyArgs {
    /// Modules user code may not import (comma-separated; replaces the
    /// default os,subprocess,socket).
    #[arg(long, value_delimiter = ',', value_name = "MODULES")]
    deny_modules: Option<Vec<String>>,
}

impl PolicyArgs {
    fn policy(&self) -> Policy {
        let mut policy = Policy::default();
        if let Some(m) = &self.deny_modules {
            policy.denied_modules = m.iter().filter(|m| !m.is_empty()).cloned().collect();
        }
        policy
    }
}

/// `hoist validate DIR`.
#[derive(Args)]
pub(crate) struct ValidateArgs {
    /// The function directory (user_function.py, optional requirements.txt).
    dir: PathBuf,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// `hoist build DIR --base REF (--tag REF | --registry ... --version V)`,
/// or `hoist build -f Dockerfile CONTEXT --tag REF...`.
#[derive(Args)]
pub(crate) struct BuildArgs {
    /// The function directory (user_function.py, optional requirements.txt),
    /// or with -f the build context.
    dir: PathBuf,
    /// Build this Dockerfile with DIR as its context.
    #[arg(short = 'f', long = "file", value_name = "DOCKERFILE", conflicts_with_all = ["base", "registry", "namespace", "user", "function", "version", "no_bytecode"])]
    file: Option<PathBuf>,
    /// A build argument of the Dockerfile (repeatable).
    #[arg(long = "build-arg", value_name = "NAME=VALUE", requires = "file")]
    build_args: Vec<String>,
    /// The Dockerfile stage to build (default: the last).
    #[arg(long, value_name = "STAGE", requires = "file")]
    target: Option<String>,
    /// The network of the Dockerfile's RUN steps and `ADD <url>`: none
    /// (default) or host.
    #[arg(long, value_name = "none|host", requires = "file", value_parser = ["none", "host"])]
    network: Option<String>,
    /// Memory each Dockerfile RUN may use, swap included (bytes, or with
    /// k/m/g; default 2g).
    #[arg(long, value_name = "SIZE", requires = "file", value_parser = run::parse_bytes)]
    run_memory: Option<u64>,
    /// CPUs each Dockerfile RUN may use (default 2).
    #[arg(long, value_name = "N", requires = "file")]
    run_cpus: Option<f64>,
    /// Bytes each Dockerfile RUN may write to the image (bytes, or with
    /// k/m/g; default 1g; a tmpfs, so memory too).
    #[arg(long, value_name = "SIZE", requires = "file", value_parser = run::parse_bytes)]
    run_disk: Option<u64>,
    /// Longest a Dockerfile RUN may take (default 1h).
    #[arg(long, value_name = "DURATION", requires = "file", value_parser = run::parse_duration)]
    run_timeout: Option<Duration>,
    /// Base image: a reference or oci:DIR[:TAG].
    #[arg(long, value_name = "IMAGE", required_unless_present = "file")]
    base: Option<Endpoint>,
    /// Name of the result, overriding the naming template; repeat it to
    /// push the same image under several names.
    #[arg(long, value_name = "REF", conflicts_with_all = ["registry", "namespace"], required_if_eq("file", "file"))]
    tag: Vec<Reference>,
    /// Registry of the templated name
    /// {registry}/{namespace}/functions/user-{user}-func-{function}:v{version}-{sha8}.
    #[arg(long, value_name = "HOST", required_unless_present = "tag")]
    registry: Option<String>,
    /// Namespace of the templated name.
    #[arg(long, value_name = "NS", required_unless_present = "tag")]
    namespace: Option<String>,
    /// The user the function belongs to (name template and label).
    #[arg(long, value_name = "USER", required_unless_present = "tag")]
    user: Option<String>,
    /// The function's id (name template and label).
    #[arg(long, value_name = "ID", required_unless_present = "tag")]
    function: Option<String>,
    /// The function's version (name template and label).
    #[arg(long, value_name = "VERSION", required_unless_present = "tag")]
    version: Option<String>,
    /// Tag with `sha-<git short SHA>` of the function directory's repository.
    #[arg(long)]
    tag_from_git: bool,
    /// Allow the tag `latest`.
    #[arg(long)]
    allow_latest: bool,
    /// Write the image to an OCI layout (oci:DIR[:TAG]) instead of pushing.
    #[arg(long, value_name = "oci:DIR[:TAG]")]
    output: Option<Endpoint>,
    /// Replace an immutable image (a base) that holds the destination tag.
    #[arg(long)]
    force: bool,
    /// Build cache (default $XDG_CACHE_HOME/hoist or ~/.cache/hoist).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Python X.Y to assume when the base image does not tell.
    #[arg(long, value_name = "X.Y")]
    python_version: Option<String>,
    /// Resolve requirements from the local cache only.
    #[arg(long, conflicts_with = "refresh")]
    offline: bool,
    /// Always ask the package index when resolving (by default the local
    /// cache is tried first).
    #[arg(long)]
    refresh: bool,
    /// Prefix of the function labels (id, user, version, created).
    #[arg(long, value_name = "PREFIX")]
    label_prefix: Option<String>,
    /// Platform to build for (and to pick from a base index).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<Platform>,
    /// Ship no bytecode: every start of the function then compiles the
    /// modules it imports. By default the base image's interpreter compiles
    /// them in the sandbox (as root).
    #[arg(long)]
    no_bytecode: bool,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    smoke: smoke::BuildSmokeArgs,
    /// Scan the built image before pushing it: a policy rejection prints
    /// the report, pushes nothing and exits 1; warnings are printed.
    #[arg(long)]
    scan: bool,
    /// The advisory database --scan reads (default
    /// $XDG_CACHE_HOME/hoist/osv or ~/.cache/hoist/osv).
    #[arg(long = "db", value_name = "DIR", requires = "scan")]
    scan_db: Option<PathBuf>,
    /// The policy file --scan applies (default: CRITICAL rejects, HIGH
    /// warns).
    #[arg(long = "policy", value_name = "FILE", requires = "scan")]
    scan_policy: Option<PathBuf>,
}

impl BuildArgs {
    /// The vulnerability gate of --scan, loaded before any work.
    fn scan_gate(&self) -> Result<Option<scan::BuildGate>> {
        self.scan
            .then(|| scan::BuildGate::load(self.scan_db.as_deref(), self.scan_policy.as_deref()))
            .transpose()
    }
}

/// Prints problems one per line (or as JSON); exit status 1 if any.
pub(crate) fn validate(g: &Global, args: ValidateArgs) -> Result<bool> {
    let checked = function_check::check_dir(&args.dir, &args.policy.policy())
        .with_context(|| format!("validate {}", args.dir.display()))?;
    if g.json {
        let value = serde_json::json!({
            "valid": checked.is_ok(),
            "files": checked.files,
            "requirements": checked.requirements,
            "problems": checked.problems,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for p in &checked.problems {
            println!("{p}");
        }
    }
    Ok(checked.is_ok())
}

pub(crate) async fn build(g: &Global, client: Client, args: BuildArgs) -> Result<()> {
    if let Some(out) = &args.output
        && !matches!(out, Endpoint::Layout { .. })
    {
        bail!("--output takes an OCI layout (oci:DIR[:TAG]), not {out}; to push, use --tag");
    }
    if args.file.is_some() {
        return dockerfile(g, client, args).await;
    }
    let dir = &args.dir;
    if args.tag.len() > 1 {
        bail!("a function build takes one --tag");
    }
    let name = name(&args)?;
    naming::check_tag(&name, args.allow_latest)?;
    let gate = args.scan_gate()?;
    let Some(base) = args.base.clone() else {
        bail!("--base IMAGE is needed");
    };
    let mut spec = FunctionSpec::new(dir.clone(), base, name.clone());
    spec.user = args.user.clone();
    spec.function = args.function.clone();
    spec.version = args.version.clone();
    spec.python_version = args.python_version.clone();
    let mut builder = Builder::new(client.clone())?
        .policy(args.policy.policy())
        .offline(args.offline)
        .refresh(args.refresh);
    if let Some(c) = &args.cache_dir {
        builder = builder.cache_dir(c);
    }
    if let Some(p) = &args.label_prefix {
        builder = builder.label_prefix(p);
    }
    if let Some(p) = &args.platform {
        builder = builder.platform(p.clone());
    }
    // Why there is no sandbox to compile bytecode in, when there is none.
    let mut no_sandbox = None;
    if !args.no_bytecode {
        match run::sandbox() {
            Ok(sandbox) => builder = builder.sandbox(sandbox.config().clone()),
            Err(e) => no_sandbox = Some(format!("{e:#}")),
        }
    }
    let output = match builder.build(&spec).await {
        Ok(o) => o,
        Err(oci_build::Error::Invalid { problems }) => return Err(invalid(&problems)),
        Err(e) => return Err(e).with_context(|| format!("build {}", dir.display())),
    };

    let store = output.store_endpoint();
    smoke::gate(
        g,
        &args.smoke,
        &store,
        args.cache_dir.clone(),
        args.platform.clone(),
    )
    .await?;
    let verdict = match &gate {
        Some(gate) => Some(gate.check(g, &output.image).await?),
        None => None,
    };

    // Push (or write the layout): only blobs the destination lacks move;
    // base layers are mounted from the base's repository when they share
    // a registry.
    let started = Instant::now();
    let dst = match &args.output {
        Some(Endpoint::Layout { dir, tag }) => Endpoint::Layout {
            dir: dir.clone(),
            tag: Some(tag.clone().unwrap_or_else(|| output.store_tag.clone())),
        },
        _ => Endpoint::Registry(output.reference.clone()),
    };
    if let Endpoint::Registry(r) = &dst
        && !args.force
    {
        registry_ops::check_overwrite(
            &client,
            r,
            oci_model::Image::manifest(&output.image).digest(),
        )
        .await?;
    }
    let mut copier = Copier::new(client).jobs(g.jobs);
    let bar = (!g.quiet && !g.json && std::io::stderr().is_terminal()).then(progress::Bar::new);
    if let Some(bar) = &bar {
        copier = copier.progress(bar.sink());
    }
    let report = copier
        .push(&output.image, &dst)
        .await
        .with_context(|| format!("push {dst}"))?;
    if let Some(bar) = bar {
        bar.finish();
    }
    let push_time = started.elapsed();

    let pinned = output.reference.with_digest(output.manifest_digest.clone());
    if let (false, Bytecode::Skipped { reason }) = (g.quiet || args.no_bytecode, &output.bytecode) {
        let why = no_sandbox.map_or_else(String::new, |e| {
            format!(" ({e}; run as root, or pass --no-bytecode to build without)")
        });
        eprintln!(
            "hoist: warning: built without bytecode: {reason}{why}: every start compiles the modules it imports"
        );
    }
    if !g.quiet && !output.facts.stdlib_bytecode {
        eprintln!(
            "hoist: warning: base image {} ships no bytecode for the standard library of {}: every start compiles the standard modules it imports",
            spec.base, output.facts.interpreter
        );
    }
    if g.json {
        let mut phases: serde_json::Map<String, serde_json::Value> = output
            .phases
            .iter()
            .map(|(p, d)| (p.to_string(), ms(*d).into()))
            .collect();
        phases.insert("push".into(), ms(push_time).into());
        let mut value = serde_json::json!({
            "reference": pinned.to_string(),
            "destination": dst.to_string(),
            "digest": output.manifest_digest,
            "manifest_size": output.manifest_size,
            "media_type": output.manifest_media_type,
            "config_digest": output.config_digest,
            "base_digest": output.base_digest,
            "image_size": output.image_size,
            "stdlib_bytecode": output.facts.stdlib_bytecode,
            "bytecode": output.bytecode,
            "layers": output.layers,
            "packages": output.packages,
            "phases_ms": phases,
            "push": report,
        });
        if let Some(v) = &verdict {
            value["vulnerabilities"] = serde_json::to_value(v.summary())?;
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    if !g.quiet && std::io::stderr().is_terminal() {
        let mut line = String::new();
        for (p, d) in &output.phases {
            line.push_str(&format!("{p} {:.1} ms, ", ms(*d)));
        }
        eprintln!("{line}push {:.1} ms", ms(push_time));
    }
    match dst {
        Endpoint::Registry(_) => println!("{pinned}"),
        Endpoint::Layout { .. } => println!("{dst}@{}", output.manifest_digest),
    }
    Ok(())
}

/// `hoist build -f Dockerfile CONTEXT --tag REF...`: builds into the
/// store, then pushes to every tag (blobs a registry has are skipped or
/// mounted, so a second tag on one registry uploads nothing again) or
/// writes the layout of --output.
async fn dockerfile(g: &Global, client: Client, args: BuildArgs) -> Result<()> {
    let file = args.file.clone().expect("checked by the caller");
    let mut names = args.tag.clone();
    if names.is_empty() {
        bail!("--tag REF is needed");
    }
    if args.tag_from_git {
        let sha = naming::git_short_sha(&args.dir)?;
        for n in &mut names {
            *n = n.with_tag(&format!("sha-{sha}"))?;
        }
    }
    for n in &names {
        naming::check_tag(n, args.allow_latest)?;
    }
    let gate = args.scan_gate()?;
    let mut spec = oci_build::DockerfileSpec::new(&file, &args.dir, names[0].clone());
    for kv in &args.build_args {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--build-arg {kv}: not NAME=VALUE"))?;
        spec.build_args.insert(k.to_owned(), v.to_owned());
    }
    spec.target = args.target.clone();
    spec.network = args.network.as_deref() == Some("host");
    if let Some(m) = args.run_memory {
        spec.limits.memory_bytes = m;
    }
    if let Some(c) = args.run_cpus {
        if !(c > 0.0 && c.is_finite()) {
            bail!("--run-cpus {c}: must be more than 0");
        }
        spec.limits.cpus = c;
    }
    if let Some(t) = args.run_timeout {
        spec.limits.timeout = t;
    }
    if let Some(d) = args.run_disk {
        spec.run_disk = d;
    }
    // Each step as it starts, each RUN's output line as it is written.
    if !g.quiet && !g.json {
        spec.on_event(|event| match event {
            oci_build::DockerfileEvent::Step { index, total, text } => {
                eprintln!("STEP {index}/{total}: {text}");
            }
            oci_build::DockerfileEvent::Output(line) => eprintln!("  {line}"),
            _ => {}
        });
    }
    let mut builder = Builder::new(client.clone())?;
    // RUN steps run in the sandbox; without one (not root) they fail with
    // a message saying so.
    if let Ok(sandbox) = run::sandbox() {
        builder = builder.sandbox(sandbox.config().clone());
    }
    if let Some(c) = &args.cache_dir {
        builder = builder.cache_dir(c);
    }
    if let Some(p) = &args.platform {
        builder = builder.platform(p.clone());
    }
    let output = builder
        .build_dockerfile(&spec)
        .await
        .with_context(|| format!("build {}", file.display()))?;
    let store = Endpoint::Layout {
        dir: output.store.clone(),
        tag: Some(output.store_tag.clone()),
    };
    smoke::gate(
        g,
        &args.smoke,
        &store,
        args.cache_dir.clone(),
        args.platform.clone(),
    )
    .await?;
    let verdict = match &gate {
        Some(gate) => Some(gate.check(g, &output.image).await?),
        None => None,
    };
    let destinations: Vec<Endpoint> = match &args.output {
        Some(Endpoint::Layout { dir, tag }) => vec![Endpoint::Layout {
            dir: dir.clone(),
            tag: Some(tag.clone().unwrap_or_else(|| output.store_tag.clone())),
        }],
        _ => names.iter().cloned().map(Endpoint::Registry).collect(),
    };
    if !args.force {
        for dst in &destinations {
            if let Endpoint::Registry(r) = dst {
                registry_ops::check_overwrite(
                    &client,
                    r,
                    oci_model::Image::manifest(&output.image).digest(),
                )
                .await?;
            }
        }
    }
    let copier = Copier::new(client).jobs(g.jobs);
    let mut pushed = Vec::new();
    for dst in &destinations {
        let report = copier
            .push(&output.image, dst)
            .await
            .with_context(|| format!("push {dst}"))?;
        pushed.push(serde_json::json!({"destination": dst.to_string(), "push": report}));
    }
    if g.json {
        let mut value = serde_json::json!({
            "digest": output.manifest_digest,
            "config_digest": output.config_digest,
            "added_layers": output.added_layers,
            "steps": output.steps,
            "destinations": pushed,
        });
        if let Some(v) = &verdict {
            value["vulnerabilities"] = serde_json::to_value(v.summary())?;
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    for dst in &destinations {
        match dst {
            Endpoint::Registry(r) => println!("{}", r.with_digest(output.manifest_digest.clone())),
            Endpoint::Layout { .. } => println!("{dst}@{}", output.manifest_digest),
        }
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// Every problem on its own line on stderr, then the error itself.
fn invalid(problems: &[Problem]) -> anyhow::Error {
    for p in problems {
        eprintln!("{p}");
    }
    anyhow::anyhow!(
        "the function is invalid: {} problem{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    )
}

/// The result's name: --tag, else the naming template; --tag-from-git
/// replaces the tag with `sha-<short SHA>`.
fn name(args: &BuildArgs) -> Result<Reference> {
    let name = match args.tag.first() {
        Some(t) => t.clone(),
        None => {
            let part = |v: &Option<String>| v.clone().unwrap_or_default();
            naming::default_reference(
                &part(&args.registry),
                &part(&args.namespace),
                &part(&args.user),
                &part(&args.function),
                &part(&args.version),
                &naming::code_sha8(&args.dir)?,
            )?
        }
    };
    if args.tag_from_git {
        let sha = naming::git_short_sha(&args.dir)?;
        return Ok(name.with_tag(&format!("sha-{sha}"))?);
    }
    Ok(name)
}

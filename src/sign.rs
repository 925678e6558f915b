//! `hoist key generate`, `hoist sign`, `hoist verify`: cosign-compatible
//! key pairs and image signatures (see the `image-sign` crate).

use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use image_sign::{IdentityCheck, PrivateKey, PublicKey};
use oci_model::{Endpoint, Reference};
use registry_client::{Client, ClientBuilder};
use zeroize::Zeroizing;

use crate::Global;

/// The environment variable cosign reads the key password from.
const PASSWORD_VAR: &str = "COSIGN_PASSWORD";
/// The most bytes of a password read from a pipe.
const MAX_PASSWORD_BYTES: u64 = 4096;

/// `hoist key …`.
#[derive(Args)]
pub(crate) struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Generate an ECDSA P-256 key pair as cosign does: PREFIX.key (the
    /// private key, encrypted with the password from COSIGN_PASSWORD, or
    /// asked twice on a terminal, or read from a pipe; mode 0600) and
    /// PREFIX.pub. Existing files are never overwritten.
    Generate {
        /// Path prefix of the two files.
        #[arg(long, default_value = "cosign", value_name = "PREFIX")]
        out: PathBuf,
    },
}

/// `hoist sign --key FILE REF [-a K=V]...`.
#[derive(Args)]
pub(crate) struct SignArgs {
    /// The encrypted private key (cosign.key); its password from
    /// COSIGN_PASSWORD, a terminal prompt, or stdin.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The image; a tag is resolved to its digest, which is what is signed.
    image: Reference,
    /// An annotation KEY=VALUE in the signed payload's `optional` part
    /// (repeatable).
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
}

/// `hoist verify --key FILE REF`.
#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// The public key (cosign.pub).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The image; a tag is resolved to its digest.
    image: Reference,
    /// Accept a signature whatever repository its payload names (the
    /// digest still must match): for an image copied to a mirror.
    #[arg(long)]
    any_identity: bool,
}

pub(crate) fn key(args: KeyArgs) -> Result<()> {
    let KeyCommand::Generate { out } = args.command;
    let key_path = with_suffix(&out, "key");
    let pub_path = with_suffix(&out, "pub");
    for p in [&key_path, &pub_path] {
        if p.symlink_metadata().is_ok() {
            bail!("{} exists: not overwriting it", p.display());
        }
    }
    let password = read_password(true)?;
    let keys = image_sign::generate_key_pair(&password)?;
    write_new(&key_path, keys.private_pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&pub_path, keys.public_pem.as_bytes(), 0o644) {
        // Half a key pair is no key pair.
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }
    println!("Private key written to {}", key_path.display());
    println!("Public key written to {}", pub_path.display());
    Ok(())
}

pub(crate) async fn sign(g: &Global, client: Client, args: SignArgs) -> Result<()> {
    let annotations = image_sign::parse_annotations(args.annotations.iter().map(String::as_str))?;
    let pem = read_key_file(&args.key)?;
    let password = read_password(false)?;
    let key = PrivateKey::from_encrypted_pem(&pem, &password)
        .with_context(|| format!("read {}", args.key.display()))?;
    let signed = image_sign::sign(&client, &args.image, &key, annotations).await?;
    if g.json {
        println!("{}", serde_json::to_string(&signed)?);
    } else if !g.quiet {
        if !signed.added {
            eprintln!("{} was already signed by this key", signed.image);
        }
        println!("{}", signed.signature_tag);
    }
    Ok(())
}

pub(crate) async fn verify(g: &Global, client: Client, args: VerifyArgs) -> Result<ExitCode> {
    let pem = read_key_file(&args.key)?;
    let key = PublicKey::from_pem(&pem).with_context(|| format!("read {}", args.key.display()))?;
    let identity = if args.any_identity {
        IdentityCheck::Any
    } else {
        IdentityCheck::Repository
    };
    match image_sign::verify(&client, &args.image, &key, identity).await {
        Ok(verified) => {
            if g.json {
                let out = serde_json::json!({
                    "image": args.image.to_string(),
                    "verified": verified,
                });
                println!("{out}");
            } else {
                if !g.quiet {
                    eprintln!(
                        "Verified {} signature(s) of {} with {}",
                        verified.len(),
                        args.image,
                        args.key.display()
                    );
                }
                for v in &verified {
                    println!("{}", String::from_utf8_lossy(&v.payload.to_bytes()));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        // A registry that cannot be reached is not a verdict: exit 1 too,
        // but through the usual error path.
        Err(e @ image_sign::Error::Registry(_)) => Err(e.into()),
        Err(e) => {
            if g.json {
                let out = serde_json::json!({
                    "image": args.image.to_string(),
                    "error": e.to_string(),
                    "reason": e.reason(),
                });
                println!("{out}");
            }
            eprintln!("hoist: verification failed: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `hoist run --require-signature KEY`: `image` pinned to the digest a
/// signature by `key` verified for, so that a tag moved meanwhile cannot
/// swap what runs.
pub(crate) async fn verified_image(
    builder: &ClientBuilder,
    image: &Endpoint,
    key: &Path,
) -> Result<Endpoint> {
    let Endpoint::Registry(reference) = image else {
        bail!("--require-signature: {image} is an OCI layout, which carries no signatures");
    };
    let pem = read_key_file(key)?;
    let key = PublicKey::from_pem(&pem)
        .with_context(|| format!("--require-signature {}", key.display()))?;
    let client = builder.clone().build()?;
    let verified = image_sign::verify(&client, reference, &key, IdentityCheck::Repository)
        .await
        .with_context(|| format!("signature of {reference}"))?;
    let digest = verified[0].payload.manifest_digest.clone();
    Ok(Endpoint::Registry(reference.with_digest(digest)))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// Creates `path` (never replacing anything, a symlink included) with
/// `mode` and writes all of `bytes`; on failure nothing is left.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("write {}", path.display()));
    }
    Ok(())
}

fn read_key_file(path: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut out = Vec::new();
    // One byte over the limit lets the parser name the file too large.
    f.take(image_sign::MAX_KEY_FILE_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("read {}", path.display()))?;
    Ok(out)
}

/// The key password as cosign reads it: COSIGN_PASSWORD when set (even to
/// the empty string); else a prompt on a terminal (twice when `confirm`);
/// else all of stdin.
fn read_password(confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(pw) = std::env::var_os(PASSWORD_VAR) {
        use std::os::unix::ffi::OsStringExt;
        return Ok(Zeroizing::new(pw.into_vec()));
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut out = Zeroizing::new(Vec::new());
        stdin
            .lock()
            .take(MAX_PASSWORD_BYTES)
            .read_to_end(&mut out)
            .context("read the password from stdin")?;
        return Ok(out);
    }
    let first = prompt("Enter password for private key: ")?;
    if confirm {
        let again = prompt("Enter password for private key again: ")?;
        if *again != *first {
            bail!("passwords do not match");
        }
    }
    Ok(first)
}

/// Reads one line from the terminal with echo off.
fn prompt(text: &str) -> Result<Zeroizing<Vec<u8>>> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("read terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    eprint!("{text}");
    tcsetattr(&stdin, OptionalActions::Now, &quiet).context("turn terminal echo off")?;
    let mut line = Zeroizing::new(String::new());
    let read = stdin.read_line(&mut line);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    eprintln!();
    read.context("read the password")?;
    let trimmed = line.trim_end_matches(['\n', '\r']);
    Ok(Zeroizing::new(trimmed.as_bytes().to_vec()))
}

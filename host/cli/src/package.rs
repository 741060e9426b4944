//! `coda applet keygen`, `coda applet package` and `coda applet verify`: a vendor's key, a
//! signed package of a component (`coda-package`), and the offline check of one against
//! trusted keys: what `coda serve` checks when a tenant pushes it, without a service.

use std::path::{Path, PathBuf};

use clap::Args;
use coda_package::{Manifest, ManifestSource, Package, SecretKey, TrustedKeys};
use coda_runtime::{Limits, Runtime};
use serde_json::{Value as Json, json};

use crate::{Exit, LoadArgs};

#[derive(Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PKCS#8 PEM, readable by its owner only); the public
    /// key goes beside it in FILE.pub. An existing file is never overwritten
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args)]
pub struct PackageArgs {
    /// The component (.wasm)
    file: PathBuf,
    /// What the vendor says about it (YAML or JSON): name, version, vendor, description,
    /// and each capability it needs with why
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// The vendor's private key (`coda applet keygen`)
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Where to write the package [default: NAME-VERSION.codapkg]
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The package (.codapkg)
    file: PathBuf,
    /// The trusted vendor keys (YAML or JSON): a list of {vendor, key}, or a `coda serve`
    /// config file with `trusted_vendors`
    #[arg(long, value_name = "FILE")]
    trusted: PathBuf,
    #[command(flatten)]
    load: LoadArgs,
}

/// A file's text under `limit` bytes, refused before it is read whole past it.
fn read_text(path: &Path, limit: u64) -> Result<String, Exit> {
    coda_types::files::read_text_capped(path, limit).map_err(|e| match e {
        coda_types::files::ReadError::TooLarge { .. } => Exit::usage("too-large", e.to_string()),
        _ => Exit::usage("io", e.to_string()),
    })
}

fn io(path: &Path, e: std::io::Error) -> Exit {
    Exit::usage("io", format!("{}: {e}", path.display()))
}

fn refused(e: coda_package::PackageError) -> Exit {
    Exit::usage(e.kind(), e.to_string())
}

/// Writes a file only its owner may read, failing if it exists.
fn write_new(path: &Path, text: &str, private: bool) -> Result<(), Exit> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Exit::usage(
                "io",
                format!(
                    "{} exists: keygen never overwrites a key (move it away, or choose another --out)",
                    path.display()
                ),
            )
        } else {
            io(path, e)
        }
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io(path, e))
}

pub fn keygen(args: KeygenArgs) -> Result<Json, Exit> {
    let key = SecretKey::generate().map_err(|e| Exit::usage("internal", e))?;
    let pem = key.to_pem().map_err(|e| Exit::usage("internal", e))?;
    let mut public_file = args.out.clone().into_os_string();
    public_file.push(".pub");
    let public_file = PathBuf::from(public_file);
    let public = key.public().to_string();
    // The public file first: if it cannot be written, no private key is left without it.
    write_new(&public_file, &format!("{public}\n"), false)?;
    if let Err(e) = write_new(&args.out, &pem, true) {
        let _ = std::fs::remove_file(&public_file);
        return Err(e);
    }
    Ok(json!({
        "key_file": args.out.display().to_string(),
        "public_key": public,
        "public_key_file": public_file.display().to_string(),
    }))
}

/// Loads `component` as the service would and checks it against `manifest`: describe's name
/// and version are the manifest's, and the manifest declares every capability the
/// component imports or declares.
async fn check(
    runtime: &Runtime,
    file: &Path,
    bytes: &[u8],
    manifest: &Manifest,
    load: &LoadArgs,
) -> Result<Vec<String>, Exit> {
    let applet = runtime
        .load(
            bytes,
            &coda_runtime::LoadOptions {
                max_bytes: load.max_bytes,
                limits: Limits::default(),
            },
        )
        .await
        .map_err(|e| Exit::usage(e.kind(), format!("{}: {e}", file.display())))?;
    manifest
        .check_component(
            &applet.info.name,
            &applet.info.version,
            &applet.info.capabilities,
            &applet.coda_imports,
        )
        .map_err(refused)?;
    Ok(applet.coda_imports.clone())
}

pub async fn package(runtime: &Runtime, args: PackageArgs) -> Result<Json, Exit> {
    // The manifest source is the manifest to be: the package's own cap on one.
    let text = read_text(&args.manifest, coda_package::MAX_MANIFEST_BYTES)?;
    let source = ManifestSource::parse(&text).map_err(|e| {
        Exit::usage(
            "package-invalid",
            format!("{}: {e}", args.manifest.display()),
        )
    })?;
    let pem = read_text(&args.key, coda_types::files::MAX_CONFIG_FILE_BYTES)?;
    let key = SecretKey::from_pem(&pem)
        .map_err(|e| Exit::usage("usage", format!("{}: {e}", args.key.display())))?;
    let component = crate::read_capped(&args.file, args.load.max_bytes)?;
    let manifest = source.clone().pin(&component);
    let imports = check(runtime, &args.file, &component, &manifest, &args.load).await?;
    let bytes = Package::build(source, &component, &key).map_err(refused)?;
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "{}-{}.{}",
            manifest.name,
            manifest.version,
            coda_package::EXTENSION
        ))
    });
    std::fs::write(&out, &bytes).map_err(|e| io(&out, e))?;
    Ok(json!({
        "package": out.display().to_string(),
        "name": manifest.name,
        "version": manifest.version,
        "vendor": manifest.vendor,
        "signed_by": key.public().to_string(),
        "component": manifest.component,
        "capabilities": manifest.capabilities,
        "coda_imports": imports,
        "size": bytes.len(),
    }))
}

pub async fn verify(runtime: &Runtime, args: VerifyArgs) -> Result<Json, Exit> {
    let text = read_text(&args.trusted, coda_types::files::MAX_CONFIG_FILE_BYTES)?;
    let trusted = TrustedKeys::parse(&text)
        .map_err(|e| Exit::usage("usage", format!("{}: {e}", args.trusted.display())))?;
    let bytes = crate::read_capped(
        &args.file,
        args.load
            .max_bytes
            .saturating_add(coda_package::MAX_OVERHEAD),
    )?;
    let verified = Package::read(&bytes, args.load.max_bytes)
        .and_then(|p| p.verify(&trusted))
        .map_err(refused)?;
    let imports = check(
        runtime,
        &args.file,
        &verified.component,
        &verified.manifest,
        &args.load,
    )
    .await?;
    let manifest = &verified.manifest;
    Ok(json!({
        "verified": true,
        "name": manifest.name,
        "version": manifest.version,
        "vendor": manifest.vendor,
        "signed_by": verified.key.to_string(),
        "description": manifest.description,
        "component": manifest.component,
        "capabilities": manifest.capabilities,
        "coda_imports": imports,
    }))
}

//! Builds the `applets/` workspace for wasm32-wasip2 (modeled on wasmtime's
//! `crates/test-programs/artifacts/build.rs`) and generates `applets.rs` in `OUT_DIR`: one
//! constant per applet holding the absolute path of its component, the list `ALL`, and the
//! macro `foreach_hostile!`.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// One built applet.
struct Applet {
    /// The package name, e.g. `infinite-loop`.
    package: String,
    /// The package's directory, relative to the repository root, e.g.
    /// `applets/hostile/infinite-loop`.
    dir: String,
    /// The absolute path of the built component.
    wasm: PathBuf,
    hostile: bool,
    /// Under `applets/builtin`: shipped inside the `coda` binary.
    builtin: bool,
}

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("the repository root (two levels above host/applet-artifacts)");
    let applets_dir = root.join("applets");

    println!("cargo:rerun-if-changed={}", applets_dir.display());
    println!("cargo:rerun-if-changed={}", root.join("sdk").display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-env-changed=CODA_WASM_TARGET_DIR");

    let target_dir = match env::var_os("CODA_WASM_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        }
        _ => root.join("target/wasm"),
    };

    let mut applets = build(&root, &applets_dir, &target_dir);
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    snapshot_builtins(&mut applets, &out_dir.join("builtin"));
    let out = out_dir.join("applets.rs");
    std::fs::write(&out, generate(&applets))
        .unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}

/// Runs the nested `cargo build` and collects the components it reports.
fn build(root: &Path, applets_dir: &Path, target_dir: &Path) -> Vec<Applet> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(applets_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .arg("--message-format=json-render-diagnostics")
        // What the outer build set for its own (host) compilation must not leak into this
        // one: flags for the host target, the outer target dir, clippy's wrapper.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !output.status.success() {
        panic!(
            "building the applets failed ({}): {cmd:?}\n\
             If the wasm32-wasip2 target is missing, run `rustup target add wasm32-wasip2`.\n\
             --- stderr ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let hostile_dir = applets_dir.join("hostile");
    let builtin_dir = applets_dir.join("builtin");
    let mut applets = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_cdylib = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"));
        if !is_cdylib {
            continue;
        }
        let Some(wasm) = message["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"))
        else {
            continue;
        };
        let manifest = PathBuf::from(message["manifest_path"].as_str().unwrap_or_default());
        let package_dir = manifest.parent().unwrap_or(Path::new("")).to_path_buf();
        let package = package_name(&message);
        applets.push(Applet {
            dir: package_dir
                .strip_prefix(root)
                .unwrap_or(&package_dir)
                .display()
                .to_string(),
            hostile: package_dir.starts_with(&hostile_dir),
            builtin: package_dir.starts_with(&builtin_dir),
            wasm: PathBuf::from(wasm),
            package,
        });
    }
    if applets.is_empty() {
        panic!(
            "building the applets reported no wasm component: {cmd:?}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    applets.sort_by(|a, b| a.package.cmp(&b.package));
    applets
}

/// Copies the built-in components into this build's own directory and points at the copies:
/// the bytes embedded (`BUILTIN`) and the path of each built-in's constant are then the same
/// file, whatever builds `target/wasm` again later. (A later build of the applets, by
/// `./dev` or by this script run for another profile, is not byte for byte the same, and
/// a `coda` refuses a file that names a built-in with other contents.)
fn snapshot_builtins(applets: &mut [Applet], dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    for applet in applets.iter_mut().filter(|a| a.builtin) {
        let Some(name) = applet.wasm.file_name() else {
            continue;
        };
        let copy = dir.join(name);
        std::fs::copy(&applet.wasm, &copy).unwrap_or_else(|e| {
            panic!(
                "copying {} to {}: {e}",
                applet.wasm.display(),
                copy.display()
            )
        });
        applet.wasm = copy;
    }
}

/// The package name from the message's package id (`path+file:///…/dir#name@version`, or
/// `…/dir#version` when the name is the directory's), falling back on the target name.
fn package_name(message: &serde_json::Value) -> String {
    let from_id = message["package_id"].as_str().and_then(|id| {
        let (url, fragment) = id.split_once('#')?;
        match fragment.split_once('@') {
            Some((name, _version)) => Some(name.to_string()),
            None => url.rsplit('/').next().map(str::to_string),
        }
    });
    from_id.unwrap_or_else(|| {
        message["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .replace('_', "-")
    })
}

fn generate(applets: &[Applet]) -> String {
    let mut names = BTreeMap::new();
    let mut src = String::from("// Generated by coda-applet-artifacts' build.rs.\n\n");
    for applet in applets {
        let constant = applet.package.replace('-', "_").to_uppercase();
        if let Some(other) = names.insert(constant.clone(), &applet.package) {
            panic!(
                "applets `{other}` and `{}` both map to the constant `{constant}`",
                applet.package
            );
        }
        writeln!(
            src,
            "/// The component built from `{}`.\npub const {constant}: &str = {:?};",
            applet.dir,
            applet.wasm.display().to_string()
        )
        .unwrap();
    }

    src.push_str("\n/// Every applet: (package name, path of its component).\n");
    src.push_str("pub const ALL: &[(&str, &str)] = &[\n");
    for applet in applets {
        let constant = applet.package.replace('-', "_").to_uppercase();
        writeln!(src, "    ({:?}, {constant}),", applet.package).unwrap();
    }
    src.push_str("];\n\n");

    src.push_str(
        "/// The built-in applets (`applets/builtin/*`): (package name, the component's bytes),\n\
         /// embedded so that a binary using them carries them.\n",
    );
    src.push_str("pub const BUILTIN: &[(&str, &[u8])] = &[\n");
    for applet in applets.iter().filter(|a| a.builtin) {
        writeln!(
            src,
            "    ({:?}, include_bytes!({:?})),",
            applet.package,
            applet.wasm.display().to_string()
        )
        .unwrap();
    }
    src.push_str("];\n\n");

    src.push_str(
        "/// Calls `$mac!(name)` once per applet under `applets/hostile`, `name` being the package\n\
         /// name in snake case (`infinite_loop`), so that a test suite can check at compile time\n\
         /// that it has a test for each.\n\
         #[macro_export]\n\
         macro_rules! foreach_hostile {\n    ($mac:ident) => {\n",
    );
    for applet in applets.iter().filter(|a| a.hostile) {
        writeln!(src, "        $mac!({});", applet.package.replace('-', "_")).unwrap();
    }
    src.push_str("    };\n}\n");
    src
}

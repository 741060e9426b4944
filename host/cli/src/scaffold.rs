//! `coda applet new NAME --lang rust|python|js`: a ready applet project, from the templates
//! in `host/cli/templates/<lang>/` (embedded in the binary), with the world's WIT beside it.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use include_dir::{Dir, include_dir};
use serde_json::{Value as Json, json};

use crate::Exit;

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// The world a new Rust project is built against: the SDK's, the newest published one.
const WIT: &str = include_str!("../../../wit/v0.2.0/applet.wit");
/// The world the Python and JavaScript templates are built against: their pinned toolchains
/// and narrowed worlds (`wit/world.wit`) name 0.1.0's interfaces.
const WIT_V0_1_0: &str = include_str!("../../../wit/v0.1.0/applet.wit");

/// Where this binary was built from: its SDK is used by path when it is still there.
const SDK_IN_CHECKOUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk");
const SDK_GIT: &str = "https://github.com/coda-runtime/coda";

#[derive(Clone, Copy, ValueEnum)]
pub enum Lang {
    /// Rust with coda-sdk (cargo, wasm32-wasip2)
    Rust,
    /// Python with componentize-py
    Python,
    /// JavaScript with ComponentizeJS
    Js,
}

impl Lang {
    fn dir(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

#[derive(Args)]
pub struct NewArgs {
    /// The applet's name: lower case letters, digits, `-`, `_` and `.` (it is also the
    /// project's directory unless --dir says otherwise)
    name: String,
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Where to create the project [default: ./NAME]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rust only: the coda-sdk to depend on, by path [default: the SDK of the checkout this
    /// coda was built from, if it is still there; else the git repository]
    #[arg(long, value_name = "DIR")]
    sdk_path: Option<PathBuf>,
}

pub fn new(args: NewArgs) -> Result<Json, Exit> {
    let name = args.name.as_str();
    if !coda_types::names::is_valid_name(name) {
        return Err(Exit::usage(
            "invalid-name",
            format!(
                "`{name}` is not an applet name: 1 to {} characters of a-z 0-9 . _ -, starting \
                 with a letter or digit",
                coda_types::names::MAX_NAME_LEN
            ),
        ));
    }
    let module = name.replace(['-', '.'], "_");
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        let empty = std::fs::read_dir(&dir)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(Exit::usage(
                "exists",
                format!(
                    "{} exists and is not empty: choose another --dir",
                    dir.display()
                ),
            ));
        }
    }
    let Some(template) = TEMPLATES.get_dir(args.lang.dir()) else {
        return Err(Exit::usage(
            "internal",
            format!("this coda has no {} template", args.lang.dir()),
        ));
    };
    let (sdk, sdk_testing) = sdk_dependency(args.sdk_path.as_deref())?;
    let substitute = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{module}}", &module)
            .replace("{{sdk_testing}}", &sdk_testing)
            .replace("{{sdk}}", &sdk)
    };
    let io = |path: &Path, e: std::io::Error| {
        Exit::usage("io", format!("cannot write {}: {e}", path.display()))
    };
    let mut written = Vec::new();
    let mut files = Vec::new();
    collect(template, &mut files);
    for file in files {
        let relative = file
            .path()
            .strip_prefix(args.lang.dir())
            .unwrap_or(file.path());
        let target = dir.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let contents = match file.contents_utf8() {
            Some(text) => substitute(text).into_bytes(),
            None => file.contents().to_vec(),
        };
        std::fs::write(&target, contents).map_err(|e| io(&target, e))?;
        if target.extension().is_some_and(|x| x == "sh") {
            make_executable(&target).map_err(|e| io(&target, e))?;
        }
        written.push(relative.display().to_string());
    }
    let wit = dir.join("wit").join("applet.wit");
    std::fs::create_dir_all(dir.join("wit")).map_err(|e| io(&wit, e))?;
    let world = match args.lang {
        Lang::Rust => WIT,
        Lang::Python | Lang::Js => WIT_V0_1_0,
    };
    std::fs::write(&wit, world).map_err(|e| io(&wit, e))?;
    written.push("wit/applet.wit".into());
    written.sort();
    let (build, component) = match args.lang {
        Lang::Rust => (
            "cargo build --release --target wasm32-wasip2".to_owned(),
            format!("target/wasm32-wasip2/release/{module}.wasm"),
        ),
        Lang::Python | Lang::Js => ("./build.sh".to_owned(), format!("{module}.wasm")),
    };
    Ok(json!({
        "created": dir.display().to_string(),
        "name": name,
        "lang": args.lang.dir(),
        "files": written,
        "next": [
            format!("cd {}", dir.display()),
            build,
            format!("coda applet test {component} --fixture tests/"),
        ],
    }))
}

fn collect<'a>(dir: &'a Dir<'a>, out: &mut Vec<&'a include_dir::File<'a>>) {
    out.extend(dir.files());
    for sub in dir.dirs() {
        collect(sub, out);
    }
}

/// The Cargo dependency on coda-sdk, without and with its `testing` feature.
fn sdk_dependency(explicit: Option<&Path>) -> Result<(String, String), Exit> {
    let path = match explicit {
        Some(path) => Some(
            std::fs::canonicalize(path)
                .map_err(|e| Exit::usage("usage", format!("--sdk-path {}: {e}", path.display())))?,
        ),
        None => std::fs::canonicalize(SDK_IN_CHECKOUT).ok(),
    };
    let source = match path {
        Some(path) => {
            if !path.join("Cargo.toml").is_file() {
                return Err(Exit::usage(
                    "usage",
                    format!("{} has no Cargo.toml: it is not coda-sdk", path.display()),
                ));
            }
            // TOML basic strings take backslashes as escapes.
            format!("path = {:?}", path.display().to_string())
        }
        None => format!("git = {SDK_GIT:?}"),
    };
    Ok((
        format!("{{ {source} }}"),
        format!("{{ {source}, features = [\"testing\"] }}"),
    ))
}

#[cfg(unix)]
fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

//! The applets of a directory, loaded into the runtime and served to the flow engine: the
//! glue between `coda-flow` (which never sees wasmtime) and `coda-runtime`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use coda_flow::{Applets, StepInput};
use coda_plan::AppletRef;
use coda_runtime::{AppletInfo, Invocation, LoadOptions, LoadedApplet, Runtime};

/// Where a component came from, for messages.
enum Origin {
    BuiltIn(&'static str),
    File(std::path::PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::BuiltIn(package) => write!(f, "the built-in {package}"),
            Origin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

pub struct DirApplets {
    runtime: Runtime,
    applets: HashMap<String, Arc<LoadedApplet>>,
}

impl DirApplets {
    /// Loads the built-in applets, then every `*.wasm` in `dir`. A component that is refused
    /// is reported on stderr and left out; two different components claiming the same name
    /// and version are an error (the same component twice is loaded once). Components are
    /// loaded concurrently (most come from the artifact cache), then taken in order.
    pub async fn load(runtime: Runtime, dir: Option<&Path>) -> Result<Self, String> {
        let mut sources: Vec<(Origin, std::borrow::Cow<'static, [u8]>)> =
            coda_applet_artifacts::BUILTIN
                .iter()
                .map(|(package, bytes)| (Origin::BuiltIn(package), (*bytes).into()))
                .collect();
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| format!("cannot read the applets directory {}: {e}", dir.display()))?;
            let mut paths: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect();
            paths.sort();
            for path in paths {
                let bytes = std::fs::read(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                sources.push((Origin::File(path), bytes.into()));
            }
        }

        let mut loading = tokio::task::JoinSet::new();
        for (index, (_, bytes)) in sources.iter().enumerate() {
            let (runtime, bytes) = (runtime.clone(), bytes.clone().into_owned());
            loading
                .spawn(async move { (index, runtime.load(&bytes, &LoadOptions::default()).await) });
        }
        let mut loaded: Vec<_> = loading.join_all().await.into_iter().collect();
        loaded.sort_by_key(|(index, _)| *index);

        let mut applets: HashMap<String, Arc<LoadedApplet>> = HashMap::new();
        let mut origin: HashMap<String, &Origin> = HashMap::new();
        for ((source, _), (_, result)) in sources.iter().zip(loaded) {
            let applet = match (source, result) {
                (_, Ok(applet)) => applet,
                (Origin::BuiltIn(package), Err(e)) => {
                    return Err(format!("the built-in applet {package} does not load: {e}"));
                }
                (Origin::File(path), Err(e)) => {
                    eprintln!("warning: {} is not loaded: {e}", path.display());
                    continue;
                }
            };
            let key = format!("{}@{}", applet.info.name, applet.info.version);
            if applets.get(&key).is_some_and(|a| a.digest == applet.digest) {
                continue;
            }
            if let Some(first) = origin.get(&key) {
                return Err(format!(
                    "{source} and {first} both are applet {key}, with different contents: \
                     give one of them another version"
                ));
            }
            origin.insert(key.clone(), source);
            applets.insert(key, applet);
        }
        Ok(DirApplets { runtime, applets })
    }

    pub fn infos(&self) -> impl Iterator<Item = &AppletInfo> {
        self.applets.values().map(|a| &a.info)
    }
}

#[async_trait]
impl Applets for DirApplets {
    fn info(&self, _tenant: &str, applet: &AppletRef) -> Option<AppletInfo> {
        self.applets
            .get(&applet.to_string())
            .map(|a| a.info.clone())
    }

    async fn invoke(
        &self,
        _tenant: &str,
        applet: &AppletRef,
        input: StepInput,
    ) -> Result<coda_runtime::Report, String> {
        let loaded = self
            .applets
            .get(&applet.to_string())
            .ok_or_else(|| format!("applet {applet} is not installed"))?;
        let mut invocation = Invocation::new(input.context, input.config);
        invocation.data = input.data;
        invocation.state = input.state;
        invocation.capabilities = input.capabilities;
        invocation.wall_clock = u64::try_from(input.now_ms)
            .ok()
            .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
        Ok(self.runtime.invoke(loaded, invocation).await)
    }
}

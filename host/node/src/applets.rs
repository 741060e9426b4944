//! The applets of a directory, loaded into the runtime and served to the flow engine: the
//! glue between `coda-flow` (which never sees wasmtime) and `coda-runtime`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use coda_capabilities::grants::InvocationCaps;
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
    /// The built-in that evaluates tenants' expressions for the engine
    /// ([`coda_flow::EXPRESSION_APPLET`]); a directory's applet of that name is not it.
    expression: Option<AppletRef>,
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

        // The upload limit is for components from tenants; the operator put these files here
        // (Python and JavaScript components carry their interpreter: 12 to 20 MB).
        let mut loading = tokio::task::JoinSet::new();
        for (index, (_, bytes)) in sources.iter().enumerate() {
            let (runtime, bytes) = (runtime.clone(), bytes.clone().into_owned());
            let options = LoadOptions {
                max_bytes: (bytes.len() as u64).max(LoadOptions::default().max_bytes),
                ..LoadOptions::default()
            };
            loading.spawn(async move { (index, runtime.load(&bytes, &options).await) });
        }
        let mut loaded: Vec<_> = loading.join_all().await.into_iter().collect();
        loaded.sort_by_key(|(index, _)| *index);

        let mut applets: HashMap<String, Arc<LoadedApplet>> = HashMap::new();
        let mut origin: HashMap<String, &Origin> = HashMap::new();
        let mut expression = None;
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
            if matches!(source, Origin::BuiltIn(_))
                && applet.info.name == coda_flow::EXPRESSION_APPLET
            {
                expression = AppletRef::new(&applet.info.name, &applet.info.version).ok();
            }
            origin.insert(key.clone(), source);
            applets.insert(key, applet);
        }
        Ok(DirApplets {
            runtime,
            applets,
            expression,
        })
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
        Ok(self.run(loaded, input, InvocationCaps::default()).await)
    }

    fn expression_applet(&self) -> Option<AppletRef> {
        self.expression.clone()
    }
}

impl DirApplets {
    /// One step of a loaded applet.
    async fn run(
        &self,
        loaded: &LoadedApplet,
        input: StepInput,
        caps: InvocationCaps,
    ) -> coda_runtime::Report {
        let mut invocation = Invocation::new(input.context, input.config);
        (invocation.limits.fuel, invocation.limits.memory_bytes) =
            caps.apply(invocation.limits.fuel, invocation.limits.memory_bytes);
        invocation.data = input.data;
        invocation.state = input.state;
        invocation.capabilities = input.capabilities;
        invocation.wall_clock = u64::try_from(input.now_ms)
            .ok()
            .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
        self.runtime.invoke(loaded, invocation).await
    }
}

/// The applets of `coda serve`: the built-in and directory applets for every tenant, and
/// each tenant's own uploads, read from the store (the bytes are in the database, so every
/// node sharing it sees every upload) and loaded on first use. One tenant never reaches
/// another's: uploads are kept and looked up by tenant.
pub struct ServiceApplets {
    global: DirApplets,
    store: Arc<coda_store::Store>,
    /// `(tenant, name@version)` to the loaded component. Kept for the life of the process:
    /// a version is immutable, and a retired one still runs for the plans that use it.
    tenants: std::sync::RwLock<HashMap<(String, String), Arc<LoadedApplet>>>,
    /// Each tenant's invocation caps, from its ceiling.
    ceilings: Arc<crate::CeilingLimits>,
}

impl ServiceApplets {
    pub fn new(
        global: DirApplets,
        store: Arc<coda_store::Store>,
        ceilings: Arc<crate::CeilingLimits>,
    ) -> Self {
        ServiceApplets {
            global,
            store,
            tenants: Default::default(),
            ceilings,
        }
    }

    pub fn infos(&self) -> impl Iterator<Item = &AppletInfo> {
        self.global.infos()
    }

    fn cached(&self, tenant: &str, key: &str) -> Option<Arc<LoadedApplet>> {
        self.tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(tenant.to_owned(), key.to_owned()))
            .cloned()
    }

    /// The tenant's uploaded applet, loaded: from memory, else from the store (the runtime
    /// finds the compiled artifact in its cache by digest, so this does not compile again).
    async fn uploaded(
        &self,
        tenant: &str,
        applet: &AppletRef,
    ) -> Result<Arc<LoadedApplet>, String> {
        let key = applet.to_string();
        if let Some(loaded) = self.cached(tenant, &key) {
            return Ok(loaded);
        }
        let (digest, bytes) = self
            .store
            .applet_component(tenant, applet.name(), applet.version())
            .map_err(|e| format!("cannot read applet {applet} from the store: {e}"))?
            .ok_or_else(|| format!("applet {applet} is not installed"))?;
        // The bytes were within the tenant's limit when uploaded; a later, lower limit does
        // not stop what plans already use.
        let options = LoadOptions {
            max_bytes: (bytes.len() as u64).max(LoadOptions::default().max_bytes),
            ..LoadOptions::default()
        };
        let loaded = self
            .global
            .runtime
            .load(&bytes, &options)
            .await
            .map_err(|e| format!("applet {applet} does not load: {e}"))?;
        if loaded.digest != digest {
            return Err(format!(
                "applet {applet}'s stored bytes do not match their digest {digest}: not run"
            ));
        }
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((tenant.to_owned(), key), loaded.clone());
        Ok(loaded)
    }
}

#[async_trait]
impl Applets for ServiceApplets {
    fn info(&self, tenant: &str, applet: &AppletRef) -> Option<AppletInfo> {
        if let Some(info) = self.global.info(tenant, applet) {
            return Some(info);
        }
        if let Some(loaded) = self.cached(tenant, &applet.to_string()) {
            return Some(loaded.info.clone());
        }
        // Not loaded on this node yet: what it described at upload (retired or not).
        match self
            .store
            .tenant_applet(tenant, applet.name(), applet.version())
        {
            Ok(record) => record.and_then(|r| serde_json::from_value(r.info).ok()),
            Err(e) => {
                tracing::warn!(tenant, %applet, "cannot read an applet's info from the store: {e}");
                None
            }
        }
    }

    async fn invoke(
        &self,
        tenant: &str,
        applet: &AppletRef,
        input: StepInput,
    ) -> Result<coda_runtime::Report, String> {
        let caps = self.ceilings.caps(tenant);
        if let Some(loaded) = self.global.applets.get(&applet.to_string()) {
            return Ok(self.global.run(loaded, input, caps).await);
        }
        let loaded = self.uploaded(tenant, applet).await?;
        Ok(self.global.run(&loaded, input, caps).await)
    }

    /// The built-in one: looked up before the tenant's uploads in [`Self::invoke`], so an
    /// upload of the same name and version cannot stand in for it.
    fn expression_applet(&self) -> Option<AppletRef> {
        self.global.expression_applet()
    }
}

/// Uploads are checked by loading them: validated, compiled (once per digest: the artifact
/// cache) and described, with the tenant's upload limit as the size limit.
#[async_trait]
impl coda_server::AppletInstaller for ServiceApplets {
    async fn inspect(
        &self,
        bytes: &[u8],
        max_bytes: usize,
    ) -> Result<coda_server::InspectedApplet, coda_server::Refused> {
        let options = LoadOptions {
            max_bytes: max_bytes as u64,
            ..LoadOptions::default()
        };
        match self.global.runtime.load(bytes, &options).await {
            Ok(loaded) => Ok(coda_server::InspectedApplet {
                info: loaded.info.clone(),
                coda_imports: loaded.coda_imports.clone(),
                digest: loaded.digest.clone(),
            }),
            Err(e) => Err(coda_server::Refused {
                kind: e.kind(),
                message: e.to_string(),
                internal: matches!(e, coda_runtime::LoadError::Internal(_)),
            }),
        }
    }
}

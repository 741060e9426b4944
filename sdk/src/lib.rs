//! `coda-sdk`: write a coda applet in Rust.
//!
//! An applet implements [`Applet`] and names its type in [`export_applet!`]. The SDK
//! generates the component's exports, parses the node configuration into the applet's own
//! typed `Config` (whose JSON Schema it derives and reports in `describe`), and gives typed
//! access to data sources, per-node state and the log through [`Context`].
//!
//! ```ignore
//! use coda_sdk::{Applet, Context, Failure, Info, Outcome};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Config { greeting: String }
//!
//! struct Hello;
//! impl Applet for Hello {
//!     type Config = Config;
//!     fn info() -> Info { Info::new("hello", env!("CARGO_PKG_VERSION")).exits(["next"]) }
//!     fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
//!         cx.set_data("Greeting", &config.greeting)?;
//!         Ok(Outcome::exit("next"))
//!     }
//! }
//! coda_sdk::export_applet!(Hello);
//! ```

/// The bindings generated from the `coda:applet@0.2.0` world. Applets rarely need these
/// directly: the capability modules below wrap them.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit/v0.2.0",
        world: "applet",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "coda_sdk::bindings",
        generate_all,
    });
}

/// Testing an applet with no service, from its own `cargo test` (feature `testing`, native
/// targets only): build the component, load it, run fixtures. See `coda-harness`.
///
/// ```ignore
/// use coda_sdk::testing::{Harness, build_rust_component};
/// let wasm = build_rust_component(env!("CARGO_MANIFEST_DIR")).unwrap();
/// let harness = Harness::new().unwrap();
/// harness.load(&wasm).unwrap().run_file("tests/sample.fixture.yaml").unwrap().assert_passed();
/// ```
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub use coda_harness as testing;

mod applet;
mod context;
mod value;

pub use applet::{Applet, Info};
pub use bindings::coda::applet::types::{Capability, Failure, HostError, Outcome, Value};
pub use context::Context;
pub use schemars;
pub use serde_json;
pub use value::{from_json, to_json};

/// The capability interfaces, as generated. `http::send`, `email::send`, `sql::query`,
/// `secrets::get`, `interactions::clone_interaction` and every `kv` call answer
/// `HostError::NotGranted` unless the tenant granted the capability to this applet (for
/// `kv`, a prefix of the key).
pub use bindings::coda::applet::{email, http, interactions, kv, secrets, sql};

/// Writing to the step's log, journaled with the step. Every line counts against the
/// invocation's log-byte limit.
pub mod log {
    pub use crate::bindings::coda::applet::log::Level;
    use crate::bindings::coda::applet::log::log;

    pub fn trace(message: impl AsRef<str>) {
        log(Level::Trace, message.as_ref())
    }
    pub fn debug(message: impl AsRef<str>) {
        log(Level::Debug, message.as_ref())
    }
    pub fn info(message: impl AsRef<str>) {
        log(Level::Info, message.as_ref())
    }
    pub fn warn(message: impl AsRef<str>) {
        log(Level::Warn, message.as_ref())
    }
    pub fn error(message: impl AsRef<str>) {
        log(Level::Error, message.as_ref())
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::applet::{describe, run};
    pub use wit_bindgen;
}

/// Exports `$applet` (a type implementing [`Applet`]) as this component's
/// `coda:applet/handler@0.2.0`. Call it once per applet crate.
///
/// `export_applet!(MyApplet, init = my_init)` also exports `my_init` (a `fn()`) as
/// `wizer-initialize`: the host runs it once when it loads the component and starts every
/// step from the memory it leaves, so what it sets up (a parsed environment, tables) costs
/// nothing per step. Keep what it builds in a `static` (`OnceLock`) that `run` also fills
/// when empty: a host that does not pre-initialize never calls it. It sees no data, state,
/// config or capability, stopped clocks and seeded random numbers (so draw secrets in `run`).
#[macro_export]
macro_rules! export_applet {
    ($applet:ty, init = $init:path) => {
        $crate::export_applet!($applet);
        // Wizer's export, in a world of its own beside the coda world (which is unchanged):
        // the component's world is the union of the two.
        #[doc(hidden)]
        #[allow(clippy::all)]
        mod __coda_init {
            $crate::__private::wit_bindgen::generate!({
                inline: "package coda:sdk-init; world applet-init { export wizer-initialize: func(); }",
                world: "coda:sdk-init/applet-init",
                runtime_path: "::coda_sdk::__private::wit_bindgen::rt",
            });
        }
        struct __CodaInit;
        impl __coda_init::Guest for __CodaInit {
            fn wizer_initialize() {
                $init()
            }
        }
        __coda_init::export!(__CodaInit with_types_in __coda_init);
    };
    ($applet:ty) => {
        const _: () = {
            struct __CodaHandler;
            impl $crate::bindings::exports::coda::applet::handler::Guest for __CodaHandler {
                fn describe() -> $crate::bindings::coda::applet::types::AppletInfo {
                    $crate::__private::describe::<$applet>()
                }
                fn run(
                    invocation: $crate::bindings::coda::applet::types::Invocation,
                ) -> ::core::result::Result<$crate::Outcome, $crate::Failure> {
                    $crate::__private::run::<$applet>(invocation)
                }
            }
    $crate::bindings::__export_world!(__CodaHandler with_types_in $crate::bindings);
        };
    };
}

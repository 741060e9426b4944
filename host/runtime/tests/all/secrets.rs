//! The runtime's part in keeping secrets out of what the host writes (issue 14, finding 2):
//! every value `secrets.get` returns is recorded in the step's scrubber, host errors reach
//! the applet scrubbed of it, and the trace event of an applet's log line carries no secret.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use coda_runtime::capabilities::{Capabilities, CapabilityCall, CapabilityReply, HttpResponse};
use coda_runtime::{HostError, Invocation, InvocationContext, InvokeError, Outcome};
use serde_json::json;

use crate::{context, load, runtime};

const SECRET: &str = "tok7Qz4mXw";

/// Grants the secret `crm`; the downstream either answers 200 or fails with a text that
/// carries the whole URL, as reqwest's did.
struct Downstream {
    fail: bool,
}

#[async_trait]
impl Capabilities for Downstream {
    async fn call(
        &self,
        _: &InvocationContext,
        call: CapabilityCall,
    ) -> Result<CapabilityReply, HostError> {
        match call {
            CapabilityCall::Secret { name } if name == "crm-token" => {
                Ok(CapabilityReply::Secret(SECRET.into()))
            }
            CapabilityCall::Secret { name } => {
                Err(HostError::NotGranted(format!("secret '{name}'")))
            }
            CapabilityCall::Http(request) if self.fail => Err(HostError::Unavailable(format!(
                "error sending request for url ({})",
                request.url
            ))),
            CapabilityCall::Http(_) => Ok(CapabilityReply::Http(HttpResponse {
                status: 200,
                headers: vec![],
                body: b"{}".to_vec(),
            })),
            other => Err(other.not_granted()),
        }
    }
}

/// A `tracing` writer that keeps what it is given.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn connect(fail: bool, url: &str) -> (coda_runtime::Report, InvocationContext) {
    let applet = load(coda_applet_artifacts::DATA_CONNECTOR).await;
    let cx = context();
    let mut invocation = Invocation::new(
        cx.clone(),
        json!({ "url": url, "secrets": { "crm": "crm-token" } }),
    );
    invocation.capabilities = Arc::new(Downstream { fail });
    (runtime().invoke(&applet, invocation).await, cx)
}

#[tokio::test(flavor = "current_thread")]
async fn a_secret_read_is_recorded_and_kept_out_of_host_errors_and_traces() {
    // The host error echoes the URL: the applet gets it scrubbed, so its failure is too.
    let (report, cx) = connect(true, "https://api.invalid/x?key={{ secrets.crm }}").await;
    match &report.result {
        Err(InvokeError::Failure(f)) => {
            assert!(
                !f.message.contains(SECRET) && f.message.contains("key=[secret:crm-token]"),
                "{f:?}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // The context's scrubber (shared with the engine) holds the value the applet read.
    assert_eq!(cx.scrubber.scrub(SECRET), "[secret:crm-token]");

    // The applet logs the URL's host, here made from the secret: the step's log keeps it
    // (the engine scrubs it before the commit), the trace event does not.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _trace = tracing::subscriber::set_default(subscriber);
    let (report, _) = connect(false, "https://{{ secrets.crm }}.example.test/x").await;
    assert_eq!(report.result, Ok(Outcome::Exit("success".into())));
    assert!(report.logs[0].message.contains(SECRET), "{:?}", report.logs);
    let traced = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(traced.contains("coda::applet"), "{traced}");
    assert!(!traced.contains(SECRET), "{traced}");
    assert!(
        traced.contains("[secret:crm-token].example.test"),
        "{traced}"
    );
}

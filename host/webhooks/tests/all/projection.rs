//! The projection of the journal: a node started again long after the last pass goes on
//! from where the projection stood, not from a window before now.

use std::sync::Arc;

use coda_store::{NewSubscription, SecretsKey, Store};
use coda_webhooks::project::Projector;

use crate::delivery::finished_runs;

#[tokio::test]
async fn a_pass_long_after_the_last_goes_on_from_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    let key = SecretsKey::from_bytes([5; 32]);
    let now = coda_types::time::now_ms();
    store.ensure_tenant("acme", now - 10).await.unwrap();
    store
        .create_webhook(
            "acme",
            NewSubscription {
                id: "wh_1".into(),
                url: "https://hooks.example.com/".into(),
                events: vec!["run.done".into()],
                plan: None,
                secret: "whsec_AAAA".into(),
            },
            &key,
            5,
            now - 10,
        )
        .await
        .unwrap();
    // The last pass stood just before these runs' steps; the next comes a day later.
    store.set_webhook_scan_cursor(now - 1).await.unwrap();
    finished_runs(&store, "acme", 3).await;
    let day_later = now + 24 * 3_600_000;
    let written = Projector::default().pass(&store, day_later).await.unwrap();
    assert_eq!(written, 3, "each run's end, for the one subscription");
    let log = store
        .webhook_deliveries("acme", "wh_1", None, 10)
        .unwrap()
        .unwrap();
    assert_eq!(log.len(), 3);
    // Projected once: another pass finds nothing new.
    assert_eq!(
        Projector::default()
            .pass(&store, day_later + 1)
            .await
            .unwrap(),
        0
    );
}

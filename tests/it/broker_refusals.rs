//! A broker that answers but refuses (wrong password, unknown vhost, no permission on the vhost)
//! is a configuration error: it fails at once, naming the user and the vhost, never the password.
//! Only a broker that does not answer is waited for (`faults::a_broker_down_at_start_is_waited_for`).

use std::time::{Duration, Instant};

use shared::bus::{Bus, BusError, Topology};
use shared::config::SecretUrl;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Connects with `url` and returns the error, asserting it came at once.
async fn refusal(url: &str) -> BusError {
    let started = Instant::now();
    let (secret, shutdown) = (SecretUrl::new(url), CancellationToken::new());
    let connecting = Bus::connect(
        &secret,
        Topology::new(crate::support::unique_namespace()),
        "e2e-refusal",
        "e2e",
        &shutdown,
    );
    let outcome = tokio::time::timeout(Duration::from_secs(20), connecting)
        .await
        .unwrap_or_else(|_| panic!("{url}: still retrying after 20 s"));
    let error = match outcome {
        Ok(bus) => {
            bus.close().await;
            panic!("{url}: connected")
        }
        Err(error) => error,
    };
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{url}: refused only after {:?} (retried like an outage?)",
        started.elapsed()
    );
    assert!(!error.is_transient(), "{error}");
    error
}

#[tokio::test]
async fn a_wrong_password_fails_at_once_without_showing_it() {
    let error = refusal("amqp://guest:n0t-the-Passw0rd@127.0.0.1:5672/%2f").await;
    let text = error.to_string();
    assert!(!text.contains("n0t-the-Passw0rd"), "{text}");
    assert!(text.contains("user `guest`"), "{text}");
    assert!(text.contains("vhost `/`"), "{text}");
    assert!(
        text.contains("ACCESS_REFUSED") || text.contains("credentials"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unknown_vhost_fails_at_once() {
    let vhost = format!("missing-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let error = refusal(&format!("amqp://guest:guest@127.0.0.1:5672/{vhost}")).await;
    let text = error.to_string();
    assert!(text.contains(&format!("vhost `{vhost}`")), "{text}");
    assert!(
        text.contains("user `guest`") && !text.contains(":guest@"),
        "{text}"
    );
}

#[tokio::test]
async fn a_vhost_without_permission_fails_at_once() {
    let vhost = format!("noperm-{}", &Uuid::new_v4().simple().to_string()[..8]);
    rabbitmqctl(&["add_vhost", &vhost]);
    let _cleanup = DeleteVhost(vhost.clone());
    let error = refusal(&format!("amqp://guest:guest@127.0.0.1:5672/{vhost}")).await;
    let text = error.to_string();
    assert!(text.contains(&format!("vhost `{vhost}`")), "{text}");
    assert!(
        text.contains("NOT_ALLOWED") || text.contains("permission"),
        "{text}"
    );
}

fn rabbitmqctl(args: &[&str]) {
    let output = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running rabbitmqctl: {e}"));
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

struct DeleteVhost(String);

impl Drop for DeleteVhost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.0])
            .output();
    }
}

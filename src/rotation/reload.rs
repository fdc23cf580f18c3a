//! How a serving node learns about a rotation: it asks its key source again every
//! [`RELOAD_INTERVAL`] and puts the new keys in place when the source changed (for the key
//! file: a new inode, size or modification time, which `rotate-keys` always produces since
//! it replaces the file whole). New wraps then use the new active KEK. Reads do not wait
//! for the interval: a KEK id the ring does not know makes it look at the source at once
//! (see [`crate::crypto::KeyRing`]).
//!
//! A source that cannot be read, or that would change the blind-index secret, leaves the
//! keys in use untouched; the failure is logged once until it changes.

use std::sync::Mutex;
use std::time::Duration;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::{Orbit, Rocket};
use tokio::task::JoinHandle;

use crate::crypto::KeyRing;

/// How often a serving node looks at its key source. `rotate-keys` waits a little longer
/// than this before its last pass, so rows written by nodes meanwhile are caught.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// The fairing that runs the reload loop from lift-off to shutdown.
#[derive(Default)]
pub struct KeyReload {
    task: Mutex<Option<JoinHandle<()>>>,
}

impl KeyReload {
    pub fn fairing() -> KeyReload {
        KeyReload::default()
    }
}

/// Looks at the key source every `every` until the task is stopped.
pub async fn run(keys: KeyRing, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        tick.tick().await;
        let keys = keys.share();
        let result = tokio::task::spawn_blocking(move || keys.reload_if_changed()).await;
        match result {
            Ok(Ok(_)) => last_error = None,
            Ok(Err(e)) => {
                let e = e.to_string();
                if last_error.as_deref() != Some(e.as_str()) {
                    tracing::error!(error = %e, "the key source could not be reloaded; the keys in use stay");
                    last_error = Some(e);
                }
            }
            Err(e) => tracing::warn!(error = %e, "key reload task failed"),
        }
    }
}

#[rocket::async_trait]
impl Fairing for KeyReload {
    fn info(&self) -> Info {
        Info {
            name: "key ring reload",
            kind: Kind::Liftoff | Kind::Shutdown,
        }
    }

    async fn on_liftoff(&self, rocket: &Rocket<Orbit>) {
        let Some(app) = rocket.state::<crate::App>() else {
            return;
        };
        if app.keys.source().is_none() {
            return;
        }
        let handle = tokio::spawn(run(app.keys.share(), RELOAD_INTERVAL));
        let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = task.replace(handle) {
            old.abort();
        }
    }

    async fn on_shutdown(&self, _rocket: &Rocket<Orbit>) {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
    }
}

//! The certificate reloaded without a restart: on SIGHUP (`systemctl reload`) and when the
//! certificate or key file changes (a renewal by certbot or the like, looked for every
//! `--cert-poll-secs`). Control's HTTPS takes the new certificate at once (`Tls::reload`); signaling is
//! sent SIGHUP and reloads its own; the router's TURN over TLS watches the files itself. Open
//! connections, calls among them, are not touched: the router's DTLS has its own certificate.
//! A file that cannot be read or a key that does not match the certificate leaves the old
//! certificate in place, with a warning.

use std::path::Path;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::supervisor::Status;
use crate::tls::Tls;

/// What a file looked like: its modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Runs until `shutdown`: reloads the certificate on SIGHUP or, when `poll` is set, on a
/// change of its files seen that often.
pub async fn watch(tls: Tls, status: Status, poll: Option<Duration>, mut shutdown: watch::Receiver<bool>) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!("cannot install the SIGHUP handler ({e}); the certificate is reloaded when its files change only");
            None
        }
    };
    let mut seen = (stamp(&tls.cert_path), stamp(&tls.key_path));
    // Without polling the timer still runs, daily, and finds nothing to do.
    let mut tick = tokio::time::interval(poll.unwrap_or(Duration::from_secs(86_400)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            _ = async { hangup.as_mut()?.recv().await }, if hangup.is_some() => "SIGHUP",
            _ = tick.tick() => {
                let now = (stamp(&tls.cert_path), stamp(&tls.key_path));
                if poll.is_none() || now == seen {
                    continue;
                }
                seen = now;
                "the certificate or key file changed"
            }
            _ = crate::shutting_down(&mut shutdown) => return,
        };
        reload(&tls, &status, why);
    }
}

fn reload(tls: &Tls, status: &Status, why: &str) {
    match tls.reload() {
        Ok(fingerprint) => {
            info!(why, cert = %tls.cert_path.display(), sha256 = %fingerprint, "TLS certificate reloaded");
            let children = status.snapshot();
            for (child, signal) in [("signaling", libc::SIGHUP)] {
                let Some(pid) = children.get(child).and_then(|c| c.pid) else { continue };
                let Ok(pid) = libc::pid_t::try_from(pid) else { continue };
                // SAFETY: kill(2) with a pid of our own child; no memory is involved.
                if unsafe { libc::kill(pid, signal) } != 0 {
                    warn!(child, pid, error = %std::io::Error::last_os_error(), "cannot tell the child to reload its certificate");
                }
            }
        }
        Err(e) => warn!(why, error = %e, "the TLS certificate was not reloaded; the old one stays"),
    }
}

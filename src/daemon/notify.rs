//! systemd's notify protocol (`Type=notify`, `WatchdogSec=`): `READY=1`
//! once the daemon has started (journal open, schedules armed, HTTP
//! listening), `WATCHDOG=1` from the daemon's own loop every half of
//! `WATCHDOG_USEC`, `STOPPING=1` at the stop. Outside systemd
//! (`NOTIFY_SOCKET` unset) every call does nothing.
//!
//! Owns the datagrams only (sd_notify(3)'s wire format, no library); the
//! daemon decides when to send them.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where systemd listens, if it does.
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let address = match path.strip_prefix('@') {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(name.as_bytes()).ok()?
                }
                None => SocketAddr::from_pathname(&path).ok()?,
            };
            Some((UnixDatagram::unbound().ok()?, address))
        });
        Notifier { socket }
    }

    fn send(&self, state: &str) {
        if let Some((socket, address)) = &self.socket
            && let Err(e) = socket.send_to_addr(state.as_bytes(), address)
        {
            tracing::warn!(error = %e, state, "cannot notify systemd");
        }
    }

    pub fn ready(&self) {
        self.send(&format!("READY=1\nMAINPID={}", std::process::id()));
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Half of `WATCHDOG_USEC` when the watchdog is on for this process
    /// (`WATCHDOG_PID` unset or ours): how often to ping.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.socket.as_ref()?;
        let pid = std::env::var("WATCHDOG_PID").ok();
        if pid.is_some_and(|pid| pid.trim() != std::process::id().to_string()) {
            return None;
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}

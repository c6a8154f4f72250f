//! Starting and stopping the HTTP server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::api::rate_limit::{KeyRateLimiter, RateLimitConfig};
use crate::api::{self, ApiSettings, AppState};
use crate::clock::Clock;
use crate::metrics;
use crate::store::DynStore;

/// The process-wide Prometheus recorder (a process has one metrics registry).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match metrics::install() {
            Ok(handle) => {
                let upkeep = handle.clone();
                std::thread::Builder::new()
                    .name("metrics-upkeep".into())
                    .spawn(move || {
                        loop {
                            std::thread::sleep(std::time::Duration::from_secs(5));
                            upkeep.run_upkeep();
                        }
                    })
                    .ok()?;
                Some(handle)
            }
            Err(err) => {
                tracing::warn!(error = %err, "metrics recorder not installed; /metrics is disabled");
                None
            }
        })
        .clone()
}

/// A server answering on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    store: DynStore,
    clock: Arc<dyn Clock>,
    settings: ApiSettings,
    limits: RateLimitConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let rate_limiter = match settings.rate_limit_rps {
        Some(rate) => Some(KeyRateLimiter::select(rate, clock.clone(), store.clone(), &limits).await.map_err(std::io::Error::other)?),
        None => None,
    };
    let state = AppState::with_rate_limiter(store, clock, metrics_handle(), settings, rate_limiter);
    let maintenance = tokio::spawn(maintain(state.clone()));
    let listener = api::protocol_errors::EnvelopingListener(listener);
    let served = axum::serve(listener, api::router(state)).with_graceful_shutdown(shutdown).await;
    maintenance.abort();
    served
}

/// How often expired idempotency keys, dashboard sessions and idle rate-limit buckets are cleared.
const MAINTENANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Periodic housekeeping; the clock decides what has expired, the interval only when to look.
async fn maintain(state: AppState) {
    let mut every = tokio::time::interval(MAINTENANCE_EVERY);
    loop {
        every.tick().await;
        let now = state.clock.now();
        let expired_before = now.saturating_sub(state.settings.idempotency_ttl).unwrap_or(now);
        match state.idempotency.purge_idempotency_keys(expired_before).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired idempotency keys removed"),
            Err(err) => tracing::warn!(error = %err, "could not remove expired idempotency keys"),
        }
        let (idle_before, created_before) = (
            now.checked_sub(crate::dashboard::session::IDLE).unwrap_or(now),
            now.checked_sub(crate::dashboard::session::LONGEST).unwrap_or(now),
        );
        match state.dashboard.purge_sessions(idle_before, created_before).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired dashboard sessions removed"),
            Err(err) => tracing::warn!(error = %err, "could not remove expired dashboard sessions"),
        }
        if let Some(limiter) = &state.rate_limiter {
            limiter.forget_idle_keys().await;
        }
    }
}

/// A server running in the background (tests, benchmarks, embedding).
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// A server whose rate limit lives where [`KeyRateLimiter::select`] puts it without Redis.
    pub async fn start(listen: &str, store: DynStore, clock: Arc<dyn Clock>, settings: ApiSettings) -> std::io::Result<RunningServer> {
        Self::start_with(listen, store, clock, settings, RateLimitConfig::default()).await
    }

    pub async fn start_with(
        listen: &str,
        store: DynStore,
        clock: Arc<dyn Clock>,
        settings: ApiSettings,
        limits: RateLimitConfig,
    ) -> std::io::Result<RunningServer> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let settings = ApiSettings {
            public_url: if settings.public_url.is_empty() { format!("http://{addr}") } else { settings.public_url },
            ..settings
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, store, clock, settings, limits, async move {
            let _ = stopped.await;
        }));
        Ok(RunningServer { addr, stop: Some(stop), task })
    }

    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.map_err(std::io::Error::other)?
    }
}

/// A stop that several tasks wait for (the HTTP server and the engine), fired once by a signal.
#[derive(Clone)]
pub struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    /// Fires on ctrl-c or SIGTERM.
    pub fn on_signal() -> Stop {
        let (fire, stop) = tokio::sync::watch::channel(false);
        let signal = shutdown_signal();
        tokio::spawn(async move {
            signal.await;
            let _ = fire.send(true);
        });
        Stop(stop)
    }

    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.0.clone();
        async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }
    }
}

/// Completes on ctrl-c or SIGTERM. The handlers are installed when this is called (not when the
/// future is first polled), so a signal that arrives right after start-up is not lost.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let (mut terminate, mut interrupt) = signals;
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(terminate.take()) => {},
                () = wait(interrupt.take()) => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: finishing in-flight requests");
    }
}

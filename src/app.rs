//! Wiring: builds every piece from the configuration, runs them until shutdown.
//!
//! [`start`] does the start-up checks that must stop the process (git version, the mirror,
//! the compose tool when reconciling), then spawns the workers and the HTTP server and returns
//! at once: the first refresh runs in the background while the API already answers.
//! [`App::stop`] cancels everything and waits, bounded, for the workers to finish (a running
//! compose operation gets its grace period; git children are killed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::desired_state::{Store, Trigger};
use crate::engine::{Engine, Host};
use crate::git::GitReader;
use crate::http::{self, AppState, EdgeLimits, ServiceInfo};
use crate::reconcile::control::Records;
use crate::reconcile::{self, EngineView, Layout, ReconcileHandle, Reconciler, plan::Policy};
use crate::refresh::{self, RefreshHandle, Refresher};

/// Everything after start-up must be done within this (SPEC §8: exit within 25 s).
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(25);

/// A running instance.
#[derive(Debug)]
pub struct App {
    /// Where the HTTP server listens.
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    pub refresh: RefreshHandle,
    pub reconcile: Option<ReconcileHandle>,
    /// Refresh progress counters (tests wait on them).
    pub refresh_progress: tokio::sync::watch::Receiver<refresh::Progress>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// Checks, builds and spawns everything; returns once the server accepts connections.
pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<App> {
    start_with_limits(config, listener, EdgeLimits::default()).await
}

/// [`start`] with other limits for the HTTP edge (tests shorten its timeouts).
pub async fn start_with_limits(
    config: Config,
    listener: TcpListener,
    limits: EdgeLimits,
) -> anyhow::Result<App> {
    let addr = listener.local_addr().context("listener has no address")?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create DATA_DIR {}", config.data_dir.display()))?;
    let redactor = config.redactor();
    let store = Arc::new(Store::new(config.git.revision.to_string()));
    // Before the first child (`git --version` below): every child is counted in the metrics.
    crate::process::set_observer(count_command);
    let git = Arc::new(
        GitReader::open(&config.git, &config.data_dir, &config.child_env)
            .await
            .context("cannot start the git reader")?,
    );
    tracing::info!(
        repo = %config.git.repo,
        revision = %config.git.revision,
        deploy_dir = %config.git.deploy_dir,
        git = %config.git.bin.display(),
        "git reader ready"
    );

    let docker_env = crate::compose::client_env(&config.child_env.vars);
    // Queried by the status page even when nothing is reconciled.
    let host = Host::new(config.reconcile.docker_bin.clone(), docker_env.clone());
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();

    // The engine is chosen here, once; everything after only talks to it.
    let (reconciler, engine, compose_tool, deploy_mode) = if config.reconcile.enabled {
        let policy = Policy {
            remove_enabled: config.reconcile.remove_enabled,
            drift_policy: config.reconcile.drift_policy,
            instance: crate::stack::labels::instance_id(
                config.git.repo.as_str(),
                config.git.deploy_dir.as_str(),
            ),
            sync_windows: config.reconcile.sync_windows.clone(),
            image_updates: config.reconcile.image_update_interval.is_some(),
        };
        let engine = Arc::new(Engine::detect(&config.reconcile, host.clone(), docker_env).await?);
        let tool = (
            engine.describe(),
            engine.program(&config.reconcile.docker_bin),
        );
        let mode = engine.mode_name();
        let records = open_records(&config.data_dir, config.reconcile.history_limit, &store)?;
        let reconciler = Reconciler::new(
            store.clone(),
            git.clone(),
            engine.clone(),
            policy,
            Layout::under(&config.data_dir),
            redactor.clone(),
            records,
        )
        .with_settings(reconcile::SyncSettings {
            health_timeout: config.reconcile.health_timeout,
            concurrency: config.reconcile.concurrency,
            rollback_on_failure: config.reconcile.rollback_on_failure,
        });
        // SOPS files are decrypted with every age identity given (SPEC §12).
        let mut identities = crate::sops::Identities::default();
        for source in &config.sops.age_identities {
            let parsed = crate::sops::Identities::parse(source.text.expose())
                .with_context(|| format!("{}: not an age identity file", source.variable))?;
            identities = identities.merged(parsed);
        }
        if !identities.is_empty() {
            tracing::info!(
                identities = identities.len(),
                "SOPS files of the stacks are decrypted with the configured age identities"
            );
        }
        let reconciler = reconciler.with_identities(identities);
        // Image updates ask registries with the docker client's own credentials.
        let docker_config = crate::registry::DockerConfig::dir(&config.child_env.vars);
        // Plain HTTP where the engine pulls over plain HTTP (its insecure registries).
        let insecure = match engine.host().insecure_registries().await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "cannot read the engine's insecure registries; only loopback registries are asked over plain HTTP");
                Vec::new()
            }
        };
        let registries =
            crate::registry::DockerConfig::load(docker_config.as_deref()).and_then(|c| {
                crate::registry::Registries::new(
                    c,
                    crate::registry::RegistryOptions {
                        insecure,
                        ..crate::registry::RegistryOptions::default()
                    },
                )
            });
        let reconciler = match registries {
            Ok(registries) => reconciler.with_image_checks(Arc::new(registries)),
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "image updates are off: no registry client");
                reconciler
            }
        };
        (Some(reconciler), Some(engine), Some(tool), Some(mode))
    } else {
        tracing::info!("RECONCILE_ENABLED=false: desired state is refreshed, nothing is applied");
        (None, None, None, None)
    };
    let engine_view = match engine {
        Some(engine) => EngineView::new(engine),
        None => EngineView::host_only(host),
    };
    let reconciler = reconciler.map(|r| r.with_view(engine_view.clone()));
    let (compose_tool, compose_bin) = compose_tool.unzip();
    let reconcile_handle = reconciler.as_ref().map(Reconciler::handle);

    let after_refresh = reconcile_handle.clone();
    let refresher =
        Refresher::new(git, store.clone(), redactor).after_refresh(Box::new(move |_| {
            if let Some(handle) = &after_refresh {
                handle.request(reconcile::Reason::Refresh);
            }
        }));
    let refresh_handle = refresher.handle();
    let refresh_progress = refresher.progress();

    tasks.spawn(refresh::run_periodic(
        refresh_handle.clone(),
        config.poll_interval,
        refresher.progress(),
        shutdown.clone(),
    ));
    tasks.spawn(refresher.run(shutdown.clone()));
    if let Some(reconciler) = reconciler {
        tasks.spawn(reconcile::run_ticker(
            reconciler.handle(),
            config.reconcile.interval,
            shutdown.clone(),
        ));
        if let (Some(interval), Some(images)) = (
            config.reconcile.image_update_interval,
            reconciler.image_checker(),
        ) {
            tasks.spawn(images.run_periodic(interval, shutdown.clone()));
        }
        tasks.spawn(reconciler.run(shutdown.clone()));
    }

    // Notifications and commit statuses follow the store's events; a receiver never holds up
    // the store or a sync (SPEC §13).
    let context = crate::notify::deliver::Context {
        instance: config.public_url.clone().unwrap_or_else(|| {
            crate::stack::labels::instance_id(
                config.git.repo.as_str(),
                config.git.deploy_dir.as_str(),
            )
        }),
        public_url: config.public_url.clone(),
    };
    let notifier = crate::notify::Notifier::new(
        store.clone(),
        config.notify.as_ref(),
        config.commit_status.as_ref(),
        context,
        crate::notify::deliver::Options::default(),
        &shutdown,
    )
    .context("cannot build the notifications' HTTP client")?;
    if let Some(notifier) = notifier {
        tracing::info!(
            receivers = config.notify.as_ref().map_or(0, |n| n.receivers.len()),
            commit_status = config.commit_status.as_ref().map(|c| c.forge.as_str()),
            "notifications are on"
        );
        tasks.spawn(notifier.run(shutdown.clone()));
    }

    let state = AppState {
        store: store.clone(),
        refresh: refresh_handle.clone(),
        reconcile: reconcile_handle.clone(),
        engine: engine_view,
        info: Arc::new(ServiceInfo {
            repo: config.git.repo.clone(),
            revision: config.git.revision.clone(),
            deploy_dir: config.git.deploy_dir.clone(),
            webhook_secret: config.http.webhook_secret.clone(),
            api_token: config.http.api_token.clone(),
            reconcile_enabled: config.reconcile.enabled,
            compose_tool,
            deploy_mode,
            data_dir: config.data_dir.clone(),
            errors: crate::desired_state::public::PublicErrors::new(
                config.redactor(),
                Some(&config.data_dir),
            ),
            git_bin: config.git.bin.clone(),
            compose_bin,
        }),
        shutdown: shutdown.clone(),
        edge: http::Edge::new(limits.clone()),
    };
    let router = http::router(state);
    tasks.spawn(http::serve(listener, router, limits, shutdown.clone()));
    if config.http.webhook_secret.is_none() {
        tracing::info!("WEBHOOK_SECRET is not set: the webhook endpoint is disabled");
    }
    tracing::info!(%addr, poll_interval = ?config.poll_interval, "listening");

    refresh_handle.request(Trigger::Startup);
    Ok(App {
        addr,
        store,
        refresh: refresh_handle,
        reconcile: reconcile_handle,
        refresh_progress,
        shutdown,
        tasks,
    })
}

impl App {
    /// Stops accepting work, lets a running compose operation finish within its grace period,
    /// kills git children, and returns within [`SHUTDOWN_LIMIT`].
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(SHUTDOWN_LIMIT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop in time; exiting anyway");
        }
    }
}

/// Runs until `signal` resolves, then stops.
pub async fn run(
    config: Config,
    listener: TcpListener,
    signal: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let app = start(config, listener).await?;
    signal.await;
    tracing::info!("shutting down");
    app.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// `process`'s observer: each child's duration and failures become Prometheus series (the
/// wiring connects the two, so neither foundation module knows the other).
/// The deployment history and the operator's controls under `DATA_DIR/history`. A damaged
/// controls file stops start-up: forgetting a pin or a suspension silently would apply what
/// the operator held back.
fn open_records(
    data_dir: &std::path::Path,
    limit: usize,
    store: &Arc<Store>,
) -> anyhow::Result<Arc<Records>> {
    let dir = data_dir.join("history");
    let (history, report) =
        crate::history::History::open(&dir, limit).context("cannot open the deployment history")?;
    if report.skipped() > 0 {
        tracing::warn!(
            skipped = report.skipped(),
            "damaged history records were skipped (a torn last write, or a changed byte)"
        );
    }
    let controls = crate::history::Controls::open(&dir)
        .context("cannot open the stacks' pins and suspensions")?;
    Ok(Arc::new(Records::new(history, controls, store.clone())))
}

fn count_command(report: &crate::process::CommandReport<'_>) {
    use crate::process::CommandEvent;
    match report.event {
        CommandEvent::Finished(duration) => {
            crate::metrics::command_finished(report.program, report.subcommand, duration);
        }
        CommandEvent::Failed(failure) => {
            crate::metrics::command_failed(report.program, report.subcommand, failure.as_str());
        }
    }
}

//! The `docker-cd` binary: parse the command line, set up logging, run the subcommand (`serve`,
//! the default, runs the app until SIGTERM or SIGINT). Everything else lives in the library so
//! tests drive what production runs.

use std::process::ExitCode;

use docker_cd::cli::Exit;
use docker_cd::cli::operate::{self, Control};
use docker_cd::config::{
    self, CliCommand, ClientConfig, Config, ConfigError, ControlArgs, LogFormat, TokenArgs,
};
use docker_cd::untrusted::{Untrusted, sanitize};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    match config::parse_command_line().into_command() {
        CliCommand::Serve(args) => match Config::from_args(args) {
            Ok(config) => serve(config),
            Err(e) => invalid(&e),
        },
        CliCommand::Check(args) => client_command(Config::from_args(args), |config| async move {
            docker_cd::cli::check(config, &mut std::io::stdout()).await
        }),
        CliCommand::Status(args) => {
            client_command(ClientConfig::for_status(args), |client| async move {
                docker_cd::cli::status(client, &mut std::io::stdout()).await
            })
        }
        CliCommand::Refresh(args) => {
            client_command(ClientConfig::for_refresh(args), |client| async move {
                docker_cd::cli::refresh(client, &mut std::io::stdout()).await
            })
        }
        CliCommand::Diff(args) => operator_command(
            ClientConfig::for_operator(args.client, TokenArgs::default()),
            |client| async move {
                operate::diff(client, args.stack.as_deref(), &mut std::io::stdout()).await
            },
        ),
        CliCommand::History(args) => operator_command(
            ClientConfig::for_operator(args.client, TokenArgs::default()),
            |client| async move { operate::history(client, &args.stack, &mut std::io::stdout()).await },
        ),
        CliCommand::Sync(args) => control_command(args, Control::Sync),
        CliCommand::Unpin(args) => control_command(args, Control::Unpin),
        CliCommand::Suspend(args) => control_command(args, Control::Suspend),
        CliCommand::Resume(args) => control_command(args, Control::Resume),
        CliCommand::Rollback(args) => {
            let ControlArgs {
                client,
                token,
                stack,
            } = args.control;
            let revision = args.revision;
            operator_command(
                ClientConfig::for_operator(client, token),
                |client| async move {
                    operate::rollback(client, &stack, revision.as_deref(), &mut std::io::stdout())
                        .await
                },
            )
        }
    }
}

/// `sync`, `unpin`, `suspend`, `resume`.
fn control_command(args: ControlArgs, action: Control) -> ExitCode {
    let ControlArgs {
        client,
        token,
        stack,
    } = args;
    operator_command(
        ClientConfig::for_operator(client, token),
        |client| async move { operate::control(client, action, &stack, &mut std::io::stdout()).await },
    )
}

/// Invalid settings: one line per problem, exit code 2.
fn invalid(e: &ConfigError) -> ExitCode {
    for problem in &e.0 {
        eprintln!("error: {}", sanitize(&problem.to_string(), MAX_ERROR_CHARS));
    }
    ExitCode::from(2)
}

/// How much of an error `main` prints or logs: enough for a whole stderr tail.
const MAX_ERROR_CHARS: usize = 70_000;

/// Logs go to stderr; the level comes from `RUST_LOG`, else `default_level`. JSON puts each
/// event's fields at the top level, with the fields of its spans under `span` and `spans`.
/// Colours only when stderr is a terminal: a pipe or a file gets plain text.
fn init_logs(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// A short-lived subcommand (`check`, `status`, `refresh`): its settings, else their problems
/// (exit code 2); then warnings-only text logs and [`run`]. An error exits with 1.
fn client_command<C, F, E>(settings: Result<C, ConfigError>, work: impl FnOnce(C) -> F) -> ExitCode
where
    F: std::future::Future<Output = Result<Exit, E>>,
    E: std::error::Error,
{
    command(settings, work, ExitCode::FAILURE)
}

/// An operator's command (`diff`, `history`, `sync`, `rollback`, …): like [`client_command`],
/// but an error exits with 2, so that `diff`'s 1 always means "changes pending" (as
/// `terraform plan -detailed-exitcode`), and every command of the family says the same.
fn operator_command<F, E>(
    settings: Result<ClientConfig, ConfigError>,
    work: impl FnOnce(ClientConfig) -> F,
) -> ExitCode
where
    F: std::future::Future<Output = Result<Exit, E>>,
    E: std::error::Error,
{
    command(settings, work, ExitCode::from(2))
}

/// A subcommand's settings, else their problems (exit code 2); then warnings-only text logs
/// and [`run`], an error exiting with `on_error`.
fn command<C, F, E>(
    settings: Result<C, ConfigError>,
    work: impl FnOnce(C) -> F,
    on_error: ExitCode,
) -> ExitCode
where
    F: std::future::Future<Output = Result<Exit, E>>,
    E: std::error::Error,
{
    match settings {
        Ok(settings) => {
            init_logs(LogFormat::Text, "warn");
            run(work(settings), on_error)
        }
        Err(e) => invalid(&e),
    }
}

/// The multi-threaded runtime every subcommand runs on, or the exit code when it cannot start.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Runs a subcommand on a fresh runtime and turns its outcome into the exit code (`on_error`
/// for an error).
fn run<E: std::error::Error>(
    work: impl std::future::Future<Output = Result<Exit, E>>,
    on_error: ExitCode,
) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(work) {
        Ok(Exit::Success) => ExitCode::SUCCESS,
        Ok(Exit::Failure) => ExitCode::FAILURE,
        Err(e) => {
            // The chain may hold an instance's answer or a child's stderr: one escaped line.
            let error = docker_cd::error_chain(&e);
            eprintln!("error: {}", sanitize(&error, MAX_ERROR_CHARS));
            on_error
        }
    }
}

fn serve(config: Config) -> ExitCode {
    init_logs(config.log_format, "info");
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let signal = shutdown_signal()
            .map_err(|e| anyhow::anyhow!("cannot install the signal handlers: {e}"))?;
        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.http.listen))?;
        docker_cd::app::run(config, listener, signal).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let error = format!("{e:#}");
            tracing::error!(error = %Untrusted::bounded(&error, MAX_ERROR_CHARS), "docker-cd stopped with an error");
            eprintln!("error: {}", sanitize(&error, MAX_ERROR_CHARS));
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled: the app starts accepting connections before it awaits the signal,
/// and a SIGTERM sent as soon as it listens must stop it cleanly, not kill it.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

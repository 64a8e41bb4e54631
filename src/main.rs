//! The `custodian` command: run the processor, apply migrations, start a
//! development broker, or publish synthetic events.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use custodian::config::Settings;
use custodian::kafka::dev_broker::DevBroker;
use custodian::{app, produce, store, telemetry};

mod cli;

#[derive(Parser)]
#[command(
    name = "custodian",
    version,
    about = "Auditable Kafka stream processor"
)]
struct Cli {
    /// TOML settings file (default: ./custodian.toml if present).
    #[arg(long, global = true, env = "CUSTODIAN_CONFIG")]
    config: Option<PathBuf>,
    /// A file whose first line is your operator token (else the
    /// CUSTODIAN_TOKEN variable); commands that read or change data take
    /// one, each declaring the least role it needs.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Consume, process, audit (the default).
    Run,
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the configuration and print its redacted summary.
    CheckConfig,
    /// Run librdkafka's in-memory mock cluster (development only, not for production).
    DevBroker {
        /// Topics to create.
        #[arg(long, value_delimiter = ',', default_value = "transactions")]
        topics: Vec<String>,
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// Also write the bootstrap address to this file.
        #[arg(long)]
        bootstrap_file: Option<PathBuf>,
    },
    /// Inspect, replay and discard dead letters (Redis, Kafka and PostgreSQL
    /// from the same configuration as `run`).
    Dlq {
        #[command(subcommand)]
        command: cli::DlqCommand,
    },
    /// Check the audit trail: verify its hash chains, reconcile it with
    /// Kafka's offsets, make a checkpoint signing key.
    Audit {
        #[command(subcommand)]
        command: cli::AuditCommand,
    },
    /// A mock downstream HTTP service for `http` routes (demos and tests).
    MockDownstream {
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Share of requests answered 500 at random.
        #[arg(long, default_value_t = 0.0)]
        failure_rate: f64,
        /// Delay before each answer.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Answer the first N requests 500.
        #[arg(long, default_value_t = 0)]
        fail_first: u64,
    },
    /// Publish the `outbox` table to Kafka (the transactional outbox relay)
    /// until SIGTERM or Ctrl-C; several instances elect one publisher.
    Relay,
    /// Manage operators: people with a name, a role and a token of their own.
    Operator {
        #[command(subcommand)]
        command: cli::OperatorCommand,
    },
    /// Four-eyes approval: list pending requests (bulk replays over
    /// operators.four_eyes_threshold, erasures), approve or reject them.
    Approvals {
        #[command(subcommand)]
        command: cli::ApprovalsCommand,
    },
    /// Flow control: pause or resume a topic, a partition or an http route
    /// on every instance, and list the pauses in force.
    Flow {
        #[command(subcommand)]
        command: cli::FlowCommand,
    },
    /// Add rows to the `outbox` table (demos).
    Outbox {
        #[command(subcommand)]
        command: cli::OutboxCommand,
    },
    /// Where every partition of a running instance stands (its GET /status)
    /// as a table, like `kafka-consumer-groups --describe`.
    Status(cli::StatusArgs),
    /// Search transactions (what GET /transactions/search answers).
    Search(cli::SearchArgs),
    /// Publish events to Kafka: lines typed (or piped) in, one message each,
    /// or --synthetic transaction events.
    Produce {
        /// Synthetic transaction events instead of lines from stdin.
        #[arg(long)]
        synthetic: bool,
        #[command(flatten)]
        events: produce::Synthetic,
        /// Topic (default: the first of kafka.topics).
        #[arg(long)]
        topic: Option<String>,
        #[command(flatten)]
        encoding: produce::Encoding,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("custodian: {e}");
            return ExitCode::from(2);
        }
    };
    // Traces only where custodian consumes or publishes: `run` and `relay`.
    let traced = matches!(
        cli.command,
        None | Some(Command::Run) | Some(Command::Relay)
    );
    let started = if traced {
        custodian::otel::Traces::start(&settings.telemetry)
    } else {
        Ok((custodian::otel::Traces::off(), None))
    };
    let (traces, tracer) = match started {
        Ok(started) => started,
        Err(e) => {
            eprintln!("custodian: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log, tracer);
    let token_file = cli.token_file;
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => app::run_until_signal(settings),
        Command::Migrate => {
            store::migrate::run(&settings.postgres.url, std::time::Duration::from_secs(60))
                .map(|n| println!("{n} migration(s) applied"))
                .map_err(Into::into)
        }
        Command::CheckConfig => {
            println!("{:#?}", settings.summary());
            Ok(())
        }
        Command::MockDownstream {
            port,
            host,
            failure_rate,
            latency_ms,
            fail_first,
        } => mock_downstream(custodian::downstream::Options {
            bind: std::net::SocketAddr::new(host, port),
            failure_rate,
            latency: std::time::Duration::from_millis(latency_ms),
            fail_first,
        }),
        Command::Dlq { command } => current_thread(cli::dlq(settings, token_file, command)),
        Command::Audit { command } => current_thread(cli::audit(settings, token_file, command)),
        Command::Approvals { command } => {
            current_thread(cli::approvals(settings, token_file, command))
        }
        Command::Flow { command } => current_thread(cli::flow(settings, token_file, command)),
        Command::Relay => current_thread(async move {
            custodian::relay::run(settings, app::shutdown_signal()).await?;
            Ok(())
        }),
        Command::Outbox { command } => current_thread(cli::outbox(settings, command)),
        Command::Operator { command } => {
            current_thread(cli::operator(settings, token_file, command))
        }
        Command::Search(args) => current_thread(cli::search(settings, token_file, args)),
        Command::Status(args) => current_thread(cli::status(settings, token_file, args)),
        Command::DevBroker {
            topics,
            partitions,
            bootstrap_file,
        } => dev_broker(&topics, partitions, bootstrap_file),
        Command::Produce {
            synthetic: false,
            topic,
            encoding,
            ..
        } => {
            let topic = topic.unwrap_or_else(|| settings.kafka.topics[0].clone());
            let brokers = settings.kafka.brokers.clone();
            current_thread(async move {
                let encoder = encoding.encoder(&settings.schema_registry).await?;
                let sent = produce::interactive(
                    &brokers,
                    &topic,
                    encoder.as_ref(),
                    std::io::stdin().lock(),
                    std::io::stdout().lock(),
                )
                .await?;
                eprintln!("sent {sent} message(s) to {topic}");
                Ok(())
            })
        }
        Command::Produce {
            synthetic: true,
            events,
            topic,
            encoding,
        } => {
            let brokers = settings.kafka.brokers.clone();
            let topic = topic.unwrap_or_else(|| settings.kafka.topics[0].clone());
            current_thread(async move {
                let options = produce::SyntheticOptions {
                    brokers,
                    topic,
                    events,
                    encoder: encoding.encoder(&settings.schema_registry).await?,
                };
                let report = produce::synthetic(options).await?;
                println!(
                    "produced {} events ({} failed) in {:.1}s",
                    report.acknowledged,
                    report.failed,
                    report.elapsed.as_secs_f64()
                );
                anyhow::ensure!(
                    report.failed == 0,
                    "{} events were not acknowledged",
                    report.failed
                );
                Ok(())
            })
        }
    };
    // What is queued goes to the collector, within a bound.
    traces.shutdown(std::time::Duration::from_secs(3));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "custodian failed");
            eprintln!("custodian: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn current_thread<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn mock_downstream(options: custodian::downstream::Options) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&options.failure_rate),
        "--failure-rate must be between 0 and 1"
    );
    let server = custodian::downstream::MockDownstream::start(options)?;
    eprintln!(
        "mock downstream at http://{} (POST anything; GET /received lists requests); Ctrl-C to stop",
        server.addr
    );
    current_thread(async {
        app::shutdown_signal().await;
        Ok(())
    })?;
    server.stop();
    Ok(())
}

fn dev_broker(
    topics: &[String],
    partitions: i32,
    bootstrap_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let broker = DevBroker::start(1, topics, partitions)?;
    let bootstrap = broker.bootstrap_servers();
    if let Some(path) = bootstrap_file {
        std::fs::write(&path, &bootstrap)?;
    }
    println!("{bootstrap}");
    eprintln!(
        "dev broker (librdkafka mock cluster, in memory, NOT for production) at {bootstrap}; topics {topics:?} with {partitions} partitions; Ctrl-C to stop"
    );
    current_thread(async {
        app::shutdown_signal().await;
        Ok(())
    })?;
    drop(broker);
    Ok(())
}

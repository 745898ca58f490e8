//! `tandemctl`: the operator's command line for Tandem's event flows.
//!
//! ```text
//! tandemctl dlq list [--type T] [--reason R] [--since RFC3339] [--until RFC3339]
//! tandemctl dlq replay [same filters] [--max-replays 3] [--dry-run]
//! tandemctl publish --topic TOPIC --file event.json [--key KEY] [--unchecked]
//! tandemctl status customer|order|product ID
//! tandemctl reconcile [--repair]
//! tandemctl snapshot
//! ```
//! Brokers come from `--brokers`, else `BRIDGE__KAFKA__BROKERS`, else 127.0.0.1:9092; the
//! services from `--crm` / `--erp`, else `BRIDGE__CRM__URL` / `BRIDGE__ERP__URL`, else the
//! local defaults.

use std::{process::ExitCode, time::Duration};

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use sync_bridge::{
    flows::Flows,
    ops::{self, dlq},
};
use tandem_proto::{
    crm::v1::{RepublishRequest, crm_sync_client::CrmSyncClient},
    erp::v1::{erp_service_client::ErpServiceClient, erp_sync_client::ErpSyncClient},
};
use tonic::transport::{Channel, Endpoint};

#[derive(Parser)]
#[command(name = "tandemctl", version, about = "Operate Tandem's event flows")]
struct Cli {
    /// Kafka bootstrap servers.
    #[arg(long, global = true)]
    brokers: Option<String>,
    /// The CRM's gRPC endpoint.
    #[arg(
        long,
        global = true,
        env = "BRIDGE__CRM__URL",
        default_value = "http://127.0.0.1:50061"
    )]
    crm: String,
    /// The ERP's gRPC endpoint.
    #[arg(
        long,
        global = true,
        env = "BRIDGE__ERP__URL",
        default_value = "http://127.0.0.1:50062"
    )]
    erp: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The dead-letter topic.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Publish a JSON file (one event envelope) to a topic.
    Publish {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        file: String,
        /// Kafka key; default: the event's aggregate_id.
        #[arg(long)]
        key: Option<String>,
        /// Skip the JSON Schema check (to publish a bad event on purpose).
        #[arg(long)]
        unchecked: bool,
    },
    /// One entity on each side: versions, last applied, pending, dead-lettered.
    Status {
        #[arg(value_enum)]
        kind: ops::status::EntityType,
        id: String,
    },
    /// Compare every mirrored field with its owner's; with --repair, re-apply the owner's state.
    Reconcile {
        #[arg(long)]
        repair: bool,
        /// Examples shown per kind of drift.
        #[arg(long, default_value_t = 5)]
        examples: usize,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Ask the CRM and the ERP to re-publish every current entity (initial load).
    Snapshot,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List dead letters, oldest first.
    List(DlqArgs),
    /// Re-publish dead letters to their source topics.
    Replay {
        #[command(flatten)]
        filter: DlqArgs,
        /// Refuse events already replayed this many times (the loop guard).
        #[arg(long, default_value_t = 3)]
        max_replays: u32,
        /// Count what would be replayed, publish nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args)]
struct DlqArgs {
    /// Dead-letter topic.
    #[arg(long, default_value = tandem_proto::events::topics::DEAD_LETTER)]
    topic: String,
    /// Event type, e.g. crm.customer.upserted (`unknown` for unparseable payloads).
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Reason: unparseable, schema_invalid, unknown_type, rejected.
    #[arg(long)]
    reason: Option<String>,
    /// Dead-lettered at or after (RFC 3339).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Dead-lettered before (RFC 3339).
    #[arg(long)]
    until: Option<DateTime<Utc>>,
}

impl DlqArgs {
    fn filter(&self) -> dlq::Filter {
        dlq::Filter {
            event_type: self.event_type.clone(),
            reason: self.reason.clone(),
            since: self.since,
            until: self.until,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match tandem_common::runtime::block_on(run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let kafka = ops::kafka_settings(cli.brokers);
    let connect = |url: &str| -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(url.to_owned())?
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy())
    };
    let flows = Flows::new(
        connect(&cli.erp)?,
        connect(&cli.crm)?,
        Duration::from_secs(30),
    );
    match cli.command {
        Command::Status { kind, id } => {
            let mut erp = ErpServiceClient::new(connect(&cli.erp)?);
            print!(
                "{}",
                ops::status::status(&flows, &mut erp, &kafka, kind, &id).await?
            );
        }
        Command::Reconcile {
            repair,
            examples,
            quiet,
        } => {
            let report = ops::reconcile::reconcile(&flows, &cli.erp, repair, quiet).await?;
            println!("{}", report.render(examples));
            if !report.repair_failures.is_empty() || (!repair && !report.drift.is_empty()) {
                anyhow::bail!("drift found");
            }
        }
        Command::Snapshot => {
            let crm = CrmSyncClient::new(connect(&cli.crm)?)
                .republish(RepublishRequest {})
                .await?
                .into_inner();
            let erp = ErpSyncClient::new(connect(&cli.erp)?)
                .republish(tandem_proto::erp::v1::RepublishRequest {})
                .await?
                .into_inner();
            println!(
                "CRM re-published {} customers and {} orders; ERP re-published {} products, {} stock levels, {} orders and {} customers' finance",
                crm.customers,
                crm.orders,
                erp.products,
                erp.stock_levels,
                erp.orders,
                erp.customers
            );
        }
        Command::Dlq {
            command: DlqCommand::List(args),
        } => {
            let letters = dlq::list(&kafka, &args.topic, &args.filter())?;
            for letter in &letters {
                println!("{}", letter.describe());
            }
            println!("{} dead letter(s)", letters.len());
        }
        Command::Dlq {
            command:
                DlqCommand::Replay {
                    filter,
                    max_replays,
                    dry_run,
                },
        } => {
            let letters = dlq::list(&kafka, &filter.topic, &filter.filter())?;
            let report = dlq::replay(&kafka, &letters, max_replays, dry_run).await?;
            println!(
                "{} {}, {} refused by the loop guard (replayed {max_replays} times already)",
                report.replayed,
                if dry_run {
                    "would be replayed"
                } else {
                    "replayed"
                },
                report.refused
            );
        }
        Command::Publish {
            topic,
            file,
            key,
            unchecked,
        } => {
            let body = std::fs::read(&file)?;
            let (partition, offset) =
                ops::publish::publish(&kafka, &topic, &file, &body, key.as_deref(), unchecked)
                    .await?;
            println!("published to {topic}[{partition}]@{offset}");
        }
    }
    Ok(())
}

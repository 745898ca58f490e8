//! `tandemctl`: the operator's command line for Tandem's event flows.
//!
//! ```text
//! tandemctl dlq list [--type T] [--reason R] [--since RFC3339] [--until RFC3339]
//! tandemctl dlq replay [same filters] [--max-replays 3] [--dry-run]
//! tandemctl publish --topic TOPIC --file event.json [--key KEY] [--unchecked]
//! tandemctl status customer|order|product ID
//! tandemctl reconcile [--repair]
//! tandemctl resync --after-restore crm|erp [--recover-from-mirror] [--wait-s 120] [--json]
//! tandemctl snapshot
//! ```
//! `tandemctl` reads the bridge's settings (`BRIDGE_CONFIG` file, `BRIDGE__*` environment):
//! the brokers and their security, the services' internal ports and the TLS client
//! certificate to call them with (the services let in the `tandemctl` identity). `--brokers`,
//! `--crm` and `--erp` override the addresses.

use std::{process::ExitCode, time::Duration};

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use sync_bridge::{
    Settings,
    flows::Flows,
    ops::{self, dlq},
};
use tandem_common::{auth::Role, tls};
use tandem_proto::{
    crm::v1::{RepublishRequest, crm_sync_client::CrmSyncClient},
    erp::v1::{erp_service_client::ErpServiceClient, erp_sync_client::ErpSyncClient},
};
use tonic::transport::Channel;

#[derive(Parser)]
#[command(name = "tandemctl", version, about = "Operate Tandem's event flows")]
struct Cli {
    /// Kafka bootstrap servers (default: the bridge's settings).
    #[arg(long, global = true)]
    brokers: Option<String>,
    /// The CRM's internal sync endpoint (default: the bridge's settings).
    #[arg(long, global = true)]
    crm: Option<String>,
    /// The ERP's internal sync endpoint (default: the bridge's settings).
    #[arg(long, global = true)]
    erp: Option<String>,
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
    /// After one service's database was restored to an earlier point: lift its versions
    /// above what the other side has seen, list what the restore lost (with the other side's
    /// values), wait for the other side, then reconcile with repair.
    Resync {
        /// Whose database was restored.
        #[arg(long, value_enum)]
        after_restore: ops::resync::Side,
        /// Take back what the restore lost from the other side's copy, where it holds the
        /// entity's whole owned state (CRM: customers, submitted orders; ERP: products).
        #[arg(long)]
        recover_from_mirror: bool,
        /// How long to wait for the other side to apply the lifted versions.
        #[arg(long, default_value_t = 120)]
        wait_s: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Examples shown per kind of drift in the closing reconcile.
        #[arg(long, default_value_t = 5)]
        examples: usize,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Ask the CRM and the ERP to re-publish every current entity (initial load).
    Snapshot,
    /// Development only: create (once) a private CA, certificates for the services, the bridge
    /// and tandemctl, and a token signing key with its JWKS, in DIR.
    DevPki { dir: std::path::PathBuf },
    /// Development only: print a bearer token signed with DIR's development key.
    Token {
        /// The directory `dev-pki` made.
        #[arg(long, env = "TANDEM_PKI_DIR")]
        dir: std::path::PathBuf,
        /// A role: sales, warehouse, finance, admin, read-only (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<Role>,
        /// The token's subject (who the changes will name).
        #[arg(long, default_value = "developer")]
        subject: String,
        #[arg(long, default_value = "tandem-dev")]
        issuer: String,
        #[arg(long, default_value = "tandem")]
        audience: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 8 * 3600)]
        ttl_s: u64,
    },
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
    match &cli.command {
        Command::DevPki { dir } => {
            let created = ops::dev::ensure_pki(dir)?;
            if !created.is_empty() {
                eprintln!("created in {}: {}", dir.display(), created.join(", "));
            }
            return Ok(());
        }
        Command::Token {
            dir,
            roles,
            subject,
            issuer,
            audience,
            ttl_s,
        } => {
            let ttl = Duration::from_secs(*ttl_s);
            println!(
                "{}",
                ops::dev::token(dir, issuer, audience, subject, roles, ttl)?
            );
            return Ok(());
        }
        _ => {}
    }
    let mut settings = Settings::load()?;
    if let Some(brokers) = cli.brokers {
        settings.kafka.brokers = brokers;
    }
    if let Some(url) = cli.crm {
        settings.crm.url = url;
    }
    if let Some(url) = cli.erp {
        settings.erp.url = url;
    }
    let kafka = settings.kafka;
    // The services' channels, built only by the commands that call them (the Kafka-only
    // commands need no certificates).
    let channels = || -> anyhow::Result<(Channel, Channel, Flows)> {
        let crm = tls::lazy_channel(&settings.crm.url, &settings.crm.tls)?;
        let erp = tls::lazy_channel(&settings.erp.url, &settings.erp.tls)?;
        let flows = Flows::new(erp.clone(), crm.clone(), Duration::from_secs(30));
        Ok((crm, erp, flows))
    };
    match cli.command {
        Command::Status { kind, id } => {
            let (_, erp_channel, flows) = channels()?;
            let mut erp = ErpServiceClient::new(erp_channel);
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
            let (_, erp_channel, flows) = channels()?;
            let report = ops::reconcile::reconcile(&flows, erp_channel, repair, quiet).await?;
            println!("{}", report.render(examples));
            if !report.all_repaired() || (!repair && !report.drift.is_empty()) {
                anyhow::bail!("drift found");
            }
        }
        Command::Resync {
            after_restore,
            recover_from_mirror,
            wait_s,
            json,
            examples,
            quiet,
        } => {
            let (_, erp_channel, flows) = channels()?;
            let wait = Duration::from_secs(wait_s);
            let quiet = quiet || json;
            let report = match after_restore {
                ops::resync::Side::Crm => {
                    ops::resync::crm::resync(&flows, erp_channel, recover_from_mirror, quiet, wait)
                        .await?
                }
                ops::resync::Side::Erp => {
                    ops::resync::erp::resync(&flows, erp_channel, recover_from_mirror, quiet, wait)
                        .await?
                }
            };
            if json {
                println!("{:#}", report.to_json());
            } else {
                println!("{}", report.render(examples));
            }
            if !report.succeeded() {
                anyhow::bail!("the resync did not complete: see the failures above");
            }
        }
        Command::Snapshot => {
            let (crm_channel, erp_channel, _) = channels()?;
            let crm = CrmSyncClient::new(crm_channel)
                .republish(RepublishRequest {})
                .await?
                .into_inner();
            let erp = ErpSyncClient::new(erp_channel)
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
        Command::DevPki { .. } | Command::Token { .. } => {}
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

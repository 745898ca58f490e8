//! `tandemctl`: the operator's command line for Tandem's event flows.
//!
//! ```text
//! tandemctl dlq list [--type T] [--reason R] [--since RFC3339] [--until RFC3339] [--key K]
//!                    [--id TOPIC/PARTITION/OFFSET] [--state S | --all] [--limit N] [--timeout-s 60]
//! tandemctl dlq replay [same filters] [--again] [--max-replays 3] [--dry-run] [--by NAME]
//! tandemctl dlq resolve --note TEXT [same filters] [--dry-run] [--by NAME]
//! tandemctl dlq purge [same filters] [--note TEXT] [--dry-run] [--by NAME]
//! tandemctl publish --topic TOPIC --file event.json [--key KEY] [--unchecked]
//! tandemctl status customer|order|product ID
//! tandemctl reconcile [--repair]
//! tandemctl resync --after-restore crm|erp [--recover-from-mirror] [--wait-s 120] [--json]
//! tandemctl snapshot [--quiet]
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
    ops::{self, dlq, dlq_state},
};
use tandem_common::{auth::Role, kafka::KafkaSettings, tls};
use tandem_proto::{
    crm::v1::crm_sync_client::CrmSyncClient,
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
    Snapshot {
        /// No progress line.
        #[arg(long)]
        quiet: bool,
    },
    /// Receive spans over OTLP/gRPC and append them to a file (what `make run` starts).
    TraceCollector {
        /// Where the processes export (their `telemetry.otlp_endpoint`).
        #[arg(long, default_value = "127.0.0.1:4317")]
        listen: std::net::SocketAddr,
        /// The file the spans go to, one JSON object per line.
        #[arg(long, env = "TANDEM_TRACES")]
        out: std::path::PathBuf,
    },
    /// Print the traces an id names (a trace id, or a customer, order or sku id) from the
    /// collector's file: every span with its service and duration, batches through their links.
    Trace {
        id: String,
        /// The collector's file.
        #[arg(long, env = "TANDEM_TRACES")]
        file: std::path::PathBuf,
    },
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
    /// List dead letters, oldest first: the open ones (and interrupted replays) unless
    /// --state or --all says otherwise; then how far both topics were read.
    List {
        #[command(flatten)]
        select: DlqArgs,
        /// Every state.
        #[arg(long, conflicts_with = "state")]
        all: bool,
    },
    /// Re-publish open dead letters to their source topics, recording each replay.
    Replay {
        #[command(flatten)]
        select: DlqArgs,
        /// Also those replayed before, once more.
        #[arg(long)]
        again: bool,
        /// Refuse events already replayed this many times (the loop guard).
        #[arg(long, default_value_t = 3)]
        max_replays: u32,
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// Mark dead letters resolved (dealt with otherwise): no longer listed as open, never
    /// replayed.
    Resolve {
        #[command(flatten)]
        select: DlqArgs,
        /// How they were resolved (required).
        #[arg(long)]
        note: String,
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// Mark dead letters purged: hidden from listings (but --all) and never replayed; also
    /// forgets the states of dead letters the topic no longer holds.
    Purge {
        #[command(flatten)]
        select: DlqArgs,
        /// Why.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        operator: OperatorArgs,
    },
}

#[derive(Args)]
struct DlqArgs {
    /// Dead-letter topic.
    #[arg(long, default_value = tandem_proto::events::topics::DEAD_LETTER)]
    topic: String,
    /// The dead letters' state topic.
    #[arg(long, default_value = tandem_proto::events::topics::DEAD_LETTER_STATE)]
    state_topic: String,
    /// Event type, e.g. crm.customer.upserted (`unknown` for unparseable payloads).
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Reason: unparseable, schema_invalid, unknown_type, rejected, missing_dependency.
    #[arg(long)]
    reason: Option<String>,
    /// Dead-lettered at or after (RFC 3339).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Dead-lettered before (RFC 3339).
    #[arg(long)]
    until: Option<DateTime<Utc>>,
    /// Kafka key (the aggregate id).
    #[arg(long)]
    key: Option<String>,
    /// A dead letter's id as listed (TOPIC/PARTITION/OFFSET of its source record); repeat for
    /// several.
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Only dead letters in this state: open, replaying, replayed, resolved, purged (repeat
    /// for several; list and purge).
    #[arg(long)]
    state: Vec<dlq_state::State>,
    /// Read at most this many dead letters (the output says when it stopped there).
    #[arg(long)]
    limit: Option<usize>,
    /// Seconds allowed for reading each topic (the output says when it stopped there).
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
}

#[derive(Args)]
struct OperatorArgs {
    /// Count only: publish and record nothing.
    #[arg(long)]
    dry_run: bool,
    /// Who is recorded as having done it (default: $USER).
    #[arg(long)]
    by: Option<String>,
}

impl OperatorArgs {
    fn operator(&self) -> dlq::Operator {
        let by = self
            .by
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .filter(|by| !by.trim().is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        dlq::Operator {
            by,
            dry_run: self.dry_run,
        }
    }
}

impl DlqArgs {
    fn filter(&self) -> dlq::Filter {
        dlq::Filter {
            event_type: self.event_type.clone(),
            reason: self.reason.clone(),
            since: self.since,
            until: self.until,
            key: self.key.clone(),
            ids: self.ids.clone(),
            states: self.state.clone(),
        }
    }

    fn limits(&self) -> ops::ReadLimits {
        ops::ReadLimits {
            timeout: Duration::from_secs(self.timeout_s),
            max_records: self.limit,
        }
    }

    fn load(&self, kafka: &KafkaSettings) -> anyhow::Result<dlq::Listing> {
        Ok(dlq::load(
            kafka,
            &self.topic,
            &self.state_topic,
            &self.limits(),
        )?)
    }
}

/// Prints how far the listing read; an error (exit status 1) when it did not read everything.
fn finish_reading(listing: &dlq::Listing) -> anyhow::Result<()> {
    println!("{}", listing.progress());
    if !listing.complete() {
        anyhow::bail!(
            "incomplete read: not every dead letter was seen (see above); run again with a larger \
             --limit or --timeout-s"
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    tandem_common::failpoint::init_from_env();
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
        Command::TraceCollector { listen, out } => {
            let stop = tandem_common::shutdown::on_signal();
            ops::trace::collect(*listen, out, stop).await?;
            return Ok(());
        }
        Command::Trace { id, file } => {
            let printed = ops::trace::show(&ops::trace::load(file)?, id);
            if printed.is_empty() {
                anyhow::bail!("no span in {} names {id}", file.display());
            }
            print!("{printed}");
            return Ok(());
        }
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
            if !report.all_repaired() || (!repair && report.total_drift() > 0) {
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
        Command::Snapshot { quiet } => {
            let (crm_channel, erp_channel, _) = channels()?;
            let (crm, erp) = ops::snapshot::snapshot(
                CrmSyncClient::new(crm_channel),
                ErpSyncClient::new(erp_channel),
                quiet,
            )
            .await?;
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
            command: DlqCommand::List { select, all },
        } => {
            let mut filter = select.filter();
            if all {
                filter.states = dlq_state::State::ALL.to_vec();
            }
            let listing = select.load(&kafka)?;
            let shown = dlq::listed(&listing, &filter);
            for entry in &shown {
                println!("{}", entry.describe());
            }
            println!(
                "{} dead letter(s) shown; all read, by state: {}",
                shown.len(),
                listing.counts()
            );
            finish_reading(&listing)?;
        }
        Command::Dlq {
            command:
                DlqCommand::Replay {
                    select,
                    again,
                    max_replays,
                    operator,
                },
        } => {
            let listing = select.load(&kafka)?;
            let operator = operator.operator();
            let options = dlq::ReplayOptions { max_replays, again };
            let report = dlq::replay(
                &kafka,
                &listing,
                &select.filter(),
                &select.state_topic,
                &options,
                &operator,
                &select.limits(),
            )
            .await?;
            println!("{}", report.describe(operator.dry_run, max_replays));
            finish_reading(&listing)?;
        }
        Command::Dlq {
            command:
                DlqCommand::Resolve {
                    select,
                    note,
                    operator,
                },
        } => {
            let note = dlq::check_note(&note)?;
            let filter = select.filter();
            if !filter.selects() {
                anyhow::bail!(
                    "name the dead letters to resolve: --id, --type, --reason, --key, --since or --until"
                );
            }
            let listing = select.load(&kafka)?;
            let operator = operator.operator();
            let report = dlq::mark(
                &kafka,
                &listing,
                &filter,
                &select.state_topic,
                dlq_state::State::Resolved,
                Some(note),
                &operator,
            )
            .await?;
            println!("{}", report.describe("resolved", operator.dry_run));
            finish_reading(&listing)?;
        }
        Command::Dlq {
            command:
                DlqCommand::Purge {
                    select,
                    note,
                    operator,
                },
        } => {
            let note = note.as_deref().map(dlq::check_note).transpose()?;
            let filter = select.filter();
            if !filter.selects() && filter.states.is_empty() {
                anyhow::bail!(
                    "name the dead letters to purge: --id, --type, --reason, --key, --since, --until or --state"
                );
            }
            let listing = select.load(&kafka)?;
            let operator = operator.operator();
            let report = dlq::mark(
                &kafka,
                &listing,
                &filter,
                &select.state_topic,
                dlq_state::State::Purged,
                note,
                &operator,
            )
            .await?;
            println!("{}", report.describe("purged", operator.dry_run));
            finish_reading(&listing)?;
        }
        Command::DevPki { .. }
        | Command::Token { .. }
        | Command::TraceCollector { .. }
        | Command::Trace { .. } => {}
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

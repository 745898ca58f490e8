//! `tandemctl resync --after-restore crm|erp [--recover-from-mirror]`: the procedure after
//! one service's database was restored to an earlier point (docs/runbook.md, "Backups and
//! restores").
//!
//! The other side's mirror may hold versions the restored owner never reached: changes the
//! restore lost. Left alone, the owner's next changes would carry versions the mirror has
//! seen and be ignored as stale, and reconcile could not repair the difference. The resync:
//! 1. reads the mirror, and sends each entity's mirrored version to the restored owner, which
//!    lifts its own version above it and publishes its state at the new version (the owner
//!    wins), or with `--recover-from-mirror` takes the mirror's values back where the mirror
//!    holds the entity's whole owned state ([`crm`], [`erp`] say which);
//! 2. lists every entity whose mirror was ahead, with the mirror's values: what the restore
//!    lost, so nothing is lost silently; what cannot be taken back is the operator's work
//!    list;
//! 3. waits until the mirror has applied every lifted version, then reconciles with repair
//!    (the restored side's own mirrors are behind too), and reports that.
//!
//! The restored service should take no traffic from frontends until the resync is done.

pub mod crm;
pub mod erp;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::reconcile::Report;

/// Which database was restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    Crm,
    Erp,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crm => "crm",
            Self::Erp => "erp",
        }
    }
}

/// One entity whose mirror was ahead of the restored owner (or that only the mirror has).
#[derive(Debug, Clone, PartialEq)]
pub struct Lost {
    /// `customer`, `order` (CRM restored); `product`, `stock`, `order`, `finance` (ERP
    /// restored).
    pub kind: &'static str,
    pub id: String,
    /// The owner's version after the restore; 0 when it did not have the entity.
    pub owner_version: i64,
    /// The version the mirror had applied.
    pub mirror_version: i64,
    /// The mirror's values: what the restore lost.
    pub mirror: Value,
    /// What the resync did: `lifted`, `recovered`, `missing`, `re-accepted`, ...
    pub outcome: String,
    /// The owner's version after the resync (0 when it still does not have the entity).
    pub version: i64,
    /// What is left for the operator, if anything.
    pub todo: Option<String>,
}

impl Lost {
    fn to_json(&self) -> Value {
        json!({
            "kind": self.kind,
            "id": self.id,
            "owner_version": self.owner_version,
            "mirror_version": self.mirror_version,
            "mirror": self.mirror,
            "outcome": self.outcome,
            "version": self.version,
            "todo": self.todo,
        })
    }
}

/// What a resync found and did.
#[derive(Debug)]
pub struct ResyncReport {
    pub restored: Side,
    pub recover_from_mirror: bool,
    /// Entities of each kind whose mirrored version was sent to the owner.
    pub checked: Vec<(&'static str, usize)>,
    pub lost: Vec<Lost>,
    /// Calls that failed (the resync went on with the rest).
    pub failures: Vec<String>,
    /// From the first lift until the mirror had applied every lifted version.
    pub converged_in: Duration,
    /// Lifted versions the mirror had not applied when the wait ran out.
    pub unconverged: Vec<String>,
    /// The reconcile (with repair) run at the end.
    pub reconcile: Report,
}

impl ResyncReport {
    fn new(restored: Side, recover_from_mirror: bool) -> Self {
        Self {
            restored,
            recover_from_mirror,
            checked: Vec::new(),
            lost: Vec::new(),
            failures: Vec::new(),
            converged_in: Duration::ZERO,
            unconverged: Vec::new(),
            reconcile: Report::default(),
        }
    }

    /// How many lost entities ended with each outcome.
    pub fn counts(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for lost in &self.lost {
            *counts
                .entry(format!("{} {}", lost.kind, lost.outcome))
                .or_insert(0) += 1;
        }
        counts
    }

    /// Did everything the resync sent apply, and the mirror converge?
    pub fn succeeded(&self) -> bool {
        self.failures.is_empty() && self.unconverged.is_empty()
    }

    /// The report for people: counts, then every lost entity with the mirror's values and
    /// what is left to do.
    pub fn render(&self, examples: usize) -> String {
        let mut out = format!(
            "resync after a restore of the {} database{}\n",
            self.restored.as_str().to_uppercase(),
            if self.recover_from_mirror {
                ", recovering from the mirror"
            } else {
                " (the restored owner wins)"
            }
        );
        for (kind, checked) in &self.checked {
            let lost = self.lost.iter().filter(|l| l.kind == *kind).count();
            out.push_str(&format!(
                "{kind:<10} checked {checked:>7}  mirror ahead or only in the mirror {lost:>5}\n"
            ));
        }
        for (outcome, count) in self.counts() {
            out.push_str(&format!("  {outcome}: {count}\n"));
        }
        if !self.lost.is_empty() {
            out.push_str("what the restore lost (the mirror's values):\n");
        }
        for lost in &self.lost {
            if lost.kind == "invoice_numbers" {
                out.push_str(&format!(
                    "  invoice numbers: now continue above {}, the highest the mirror saw\n",
                    lost.id
                ));
                continue;
            }
            out.push_str(&format!(
                "  {} {}: owner v{} < mirror v{} {} -> {}{}\n",
                lost.kind,
                lost.id,
                lost.owner_version,
                lost.mirror_version,
                lost.mirror,
                lost.outcome,
                if lost.version > 0 {
                    format!(" at v{}", lost.version)
                } else {
                    String::new()
                }
            ));
            if let Some(todo) = &lost.todo {
                out.push_str(&format!("      to do: {todo}\n"));
            }
        }
        out.push_str(&format!(
            "converged in {} ms{}\n",
            self.converged_in.as_millis(),
            if self.unconverged.is_empty() {
                String::new()
            } else {
                format!(
                    "; NOT applied by the mirror yet: {}",
                    self.unconverged.join(", ")
                )
            }
        ));
        for failure in &self.failures {
            out.push_str(&format!("failed: {failure}\n"));
        }
        out.push_str("reconcile --repair afterwards:\n");
        out.push_str(&self.reconcile.render(examples));
        out
    }

    /// The report as JSON (`--json`), for scripts and the drill.
    pub fn to_json(&self) -> Value {
        json!({
            "restored": self.restored.as_str(),
            "recover_from_mirror": self.recover_from_mirror,
            "checked": self.checked.iter().map(|(k, n)| (k.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "lost": self.lost.iter().map(Lost::to_json).collect::<Vec<_>>(),
            "counts": self.counts(),
            "failures": self.failures,
            "converged_ms": u64::try_from(self.converged_in.as_millis()).unwrap_or(u64::MAX),
            "unconverged": self.unconverged,
            "reconcile": {
                "drift": self.reconcile.total_drift(),
                "repaired": self.reconcile.repaired,
                "not_applied": self.reconcile.not_applied,
                "repair_failures": self.reconcile.repair_failures,
            },
        })
    }
}

/// The most entities per resync call (the services' limit).
pub(crate) const BATCH: usize = 500;

/// Polls `pending` (which returns what has not converged yet) every 200 ms until it returns
/// nothing or `wait` runs out; returns how long it took and what is still pending.
pub(crate) async fn converge<F, Fut>(wait: Duration, mut pending: F) -> (Duration, Vec<String>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let started = Instant::now();
    loop {
        let left = pending().await;
        if left.is_empty() || started.elapsed() > wait {
            return (started.elapsed(), left);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(kind: &'static str, outcome: &str, todo: Option<&str>) -> Lost {
        Lost {
            kind,
            id: "c-1".into(),
            owner_version: 2,
            mirror_version: 4,
            mirror: json!({"display_name": "Acme"}),
            outcome: outcome.into(),
            version: 5,
            todo: todo.map(str::to_owned),
        }
    }

    #[test]
    fn the_report_names_what_was_lost_with_the_mirrors_values() {
        let mut report = ResyncReport::new(Side::Crm, false);
        report.checked.push(("customer", 3));
        report
            .lost
            .push(lost("customer", "lifted", Some("re-enter")));
        report.lost.push(lost("customer", "missing", None));
        let text = report.render(5);
        assert!(text.contains("customer   checked       3"), "{text}");
        assert!(text.contains("customer lifted: 1"), "{text}");
        assert!(
            text.contains(
                r#"customer c-1: owner v2 < mirror v4 {"display_name":"Acme"} -> lifted at v5"#
            ),
            "{text}"
        );
        assert!(text.contains("to do: re-enter"), "{text}");
        let json = report.to_json();
        assert_eq!(json["lost"].as_array().map(Vec::len), Some(2));
        assert_eq!(json["counts"]["customer missing"], 1);
        assert_eq!(json["lost"][0]["mirror"]["display_name"], "Acme");
        assert!(report.succeeded());
        report.unconverged.push("customer c-1 v5".into());
        assert!(
            !report.succeeded(),
            "a lifted version the mirror never applied fails it"
        );
    }
}

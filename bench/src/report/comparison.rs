//! The before/after comparison with the report this one replaced.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{Figure, markdown::num};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Previous {
    pub started_at: String,
    pub figures: Vec<Figure>,
}

/// Each figure of this report beside the same figure of the report it replaced; ratios to
/// the same-run baselines are what compare across runs on a shared machine.
pub(super) fn before_and_after(o: &mut String, figures: &[Figure], previous: &Previous) {
    let _ = writeln!(
        o,
        "\n## Before and after\n\nThe same figures in the report this one replaced (run of {}); the \
         optimisations between the two are listed under \"Optimisations\" below. Compare the ratios: the \
         machine's load differs between runs.\n",
        previous.started_at
    );
    let _ = writeln!(
        o,
        "| figure | before | before ratio | after | after ratio |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|");
    for f in figures {
        let Some(before) = previous.figures.iter().find(|b| b.name == f.name) else {
            continue;
        };
        let ratio = |r: Option<f64>| r.map(|r| format!("{r:.2}")).unwrap_or_default();
        let _ = writeln!(
            o,
            "| {} | {} {} | {} | {} {} | {} |",
            f.name,
            num(before.value),
            before.unit,
            ratio(before.ratio),
            num(f.value),
            f.unit,
            ratio(f.ratio),
        );
    }
}

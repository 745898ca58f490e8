//! The report files: `bench-results.json` (figures, results and the "before") and
//! `BENCHMARKS.md`, written after a run or rendered again from the JSON.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{Figure, Previous, Results, figures, markdown::markdown};

#[derive(Serialize)]
struct Document<'a> {
    figures: &'a [Figure],
    results: &'a Results,
    /// The figures of the report this one replaced: the "before" of a change.
    previous: Option<&'a Previous>,
}

/// What an earlier `bench-results.json` holds that the next report needs.
#[derive(Deserialize)]
struct Saved {
    results: Results,
    #[serde(default)]
    figures: Vec<Figure>,
    #[serde(default)]
    previous: Option<Previous>,
}

/// The "before" of this report: the report in `dir` it replaces, or, when `results` are that
/// report's own (a re-render), the one that report replaced.
fn previous(dir: &Path, results: &Results) -> Option<Previous> {
    let text = std::fs::read_to_string(dir.join("bench-results.json")).ok()?;
    let saved: Saved = serde_json::from_str(&text).ok()?;
    if saved.results.config.started_at == results.config.started_at {
        saved.previous
    } else {
        Some(Previous {
            started_at: saved.results.config.started_at,
            figures: saved.figures,
        })
    }
}

/// The scale run's results beside the report, when `make bench-scale` has written them.
fn scale(dir: &Path) -> Option<crate::scale::ScaleResults> {
    let text = std::fs::read_to_string(dir.join(crate::scale::RESULTS_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Renders the report again from a `bench-results.json` (after a change to the report's text).
pub fn rerender(json: &Path, dir: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let saved: Saved = serde_json::from_str(&text).context("parsing bench-results.json")?;
    write(dir, &saved.results)
}

pub fn write(dir: &Path, results: &Results) -> Result<()> {
    let figures = figures(results);
    let previous = previous(dir, results);
    let json = serde_json::to_string_pretty(&Document {
        figures: &figures,
        results,
        previous: previous.as_ref(),
    })?;
    std::fs::write(dir.join("bench-results.json"), json + "\n")
        .context("writing bench-results.json")?;
    std::fs::write(
        dir.join("BENCHMARKS.md"),
        markdown(results, &figures, previous.as_ref(), scale(dir).as_ref()),
    )
    .context("writing BENCHMARKS.md")?;
    Ok(())
}

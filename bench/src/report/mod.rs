//! The results of one run, the figures with their baselines and targets, and the report files.
//!
//! - `results`: what one run measured ([`Results`]);
//! - `figures`: the summary figures with their baselines, ratios and targets ([`Figure`]);
//! - `markdown`, `sections`, `comparison`, `text`: `BENCHMARKS.md`, its header and summary,
//!   its measurement sections, the before/after table and its fixed prose;
//! - `files`: writing the report files and rendering them again ([`write()`], [`rerender`]).

mod comparison;
mod figures;
mod files;
mod markdown;
mod results;
mod scale;
mod sections;
mod text;

pub use comparison::Previous;
pub use figures::{Figure, figures};
pub use files::{rerender, write};
pub use results::{Machine, ReadyTimes, Results, RunConfig};

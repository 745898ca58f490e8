//! Crash points at the dangerous instants, for the fault-injection tests.
//!
//! Compiled in only with the `failpoints` feature (the test build; release builds leave it
//! out, and then [`crash_point`] is an empty inline function). Points are armed at start-up
//! from the `FAILPOINTS` environment variable, `name=action;name=action`, with the actions of
//! the `fail` crate. `return` aborts the process at that point, like a SIGKILL: no destructor,
//! no flush, no offset commit. `return(context)` aborts only where the caller's context (a
//! topic, say) is `context`; other actions (`sleep(ms)`, `pause`, `print`, counts such as
//! `2*off->return`) behave as in the `fail` crate.
//!
//! The points, where they are and what a crash there must not break:
//! - `relay-ack-delayed` (outbox relay, context: the row's topic): the broker's ack for a row
//!   reaches the relay 300 ms late, while the relay goes on sending later batches.
//! - `relay-delivery-refused` (outbox relay, context: the row's topic): the broker
//!   acknowledged a row and the relay takes it as refused, as if the ack had been lost; the
//!   row and every row sent after it, in its batch or in later batches in flight, are sent
//!   again, and none of them is marked published before.
//! - `relay-after-ack-before-mark` (outbox relay): the broker acknowledged a batch, its rows
//!   are not yet marked published (context: the first row's topic); they are published
//!   again after restart (duplicates the consumers ignore).
//! - `bridge-after-apply-before-offset` (bridge worker, context: the topic): the target
//!   committed the effect, the offset is not stored; the event comes again and changes
//!   nothing.
//! - `crm-stock-mid-batch` (CRM, applying a batch of stock levels): after the first level
//!   of the batch is written, before the transaction commits; nothing of the batch stays and
//!   the bridge applies it all again.
//! - `tandemctl-replay-after-intent` and `tandemctl-replay-after-publish` (`tandemctl dlq
//!   replay`, context: the source topic): a replay recorded as begun, before and after its
//!   publish; the next replay publishes it, or finds it published and records it, once.

/// Arms the points named in `FAILPOINTS`; a bad entry is reported and ignored.
pub fn init_from_env() {
    #[cfg(feature = "failpoints")]
    if let Ok(spec) = std::env::var("FAILPOINTS") {
        for entry in spec.split(';').filter(|e| !e.trim().is_empty()) {
            match entry.split_once('=') {
                Some((name, actions)) => {
                    if let Err(error) = fail::cfg(name.trim(), actions.trim()) {
                        eprintln!("FAILPOINTS: cannot arm {name:?}: {error}");
                    }
                }
                None => eprintln!("FAILPOINTS: {entry:?} is not name=actions"),
            }
        }
    }
}

/// Aborts the process if point `name` is armed with `return` (or `return(context)` and the
/// caller's `context` matches).
#[inline]
pub fn crash_point(name: &str, context: &str) {
    if fail_point(name, context) {
        eprintln!("failpoint {name} ({context}): aborting the process");
        std::process::abort();
    }
}

/// Whether point `name` is armed with `return` (or `return(context)` and the caller's
/// `context` matches): the caller then takes the failure the point names. Always false
/// without the `failpoints` feature.
#[inline]
pub fn fail_point(name: &str, context: &str) -> bool {
    #[cfg(feature = "failpoints")]
    {
        fail::eval(name, |armed_for| {
            armed_for.is_none_or(|wanted| wanted.is_empty() || wanted == context)
        }) == Some(true)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = (name, context);
        false
    }
}

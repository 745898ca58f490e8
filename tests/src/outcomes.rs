//! What each client of a workload was told, and the checks against it (chaos suite).
//!
//! A workload records every call it makes in a [`Ledger`]: the request, and what its caller
//! was told in the end ([`Told`]): acknowledged (with whatever the answer said: ids,
//! versions, amounts), refused (with the gRPC code; nothing happened), or unknown (a timeout
//! or a transport error after the request may have reached the server). At the end the
//! checks compare the system's state with these sets, not two of the system's own tables
//! with each other; unknown outcomes are resolved there ([`Entry::resolve`]: present once,
//! absent, or present more than once, which is a duplicate).
//!
//! [`call`] makes one call with the retries a client without request ids may make:
//! a call that is not idempotent by itself ([`Retry::IfNeverSent`]) is retried only when the
//! request provably never reached the server (the TCP connection was refused); a call that is
//! ([`Retry::Always`]: a version-gated update, a state transition, a payment with its unique
//! reference) after any transient failure.
//!
//! [`Findings`] collects what the checks found, by category, for one report.

use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
    future::Future,
    sync::Mutex,
    time::Duration,
};

use tonic::{Code, Status};

/// What one call's caller was told in the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told<A> {
    /// The server answered OK; `A` holds what the answer said (ids, versions, amounts).
    Acknowledged(A),
    /// The server answered with a definite error: nothing happened.
    Refused(Code),
    /// No answer the caller can trust either way: resolved at the end.
    Unknown(String),
}

/// How an unknown outcome was resolved at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Absent,
    Once,
    /// Present more than once: a duplicate.
    Times(usize),
}

impl Found {
    pub fn of(count: usize) -> Self {
        match count {
            0 => Self::Absent,
            1 => Self::Once,
            n => Self::Times(n),
        }
    }

    pub fn present(self) -> bool {
        self != Self::Absent
    }
}

/// The kind of an operation (`create_customer`, `receive_stock`...), for the tallies.
pub trait Operation {
    fn kind(&self) -> &'static str;
}

/// One call as its caller saw it.
#[derive(Debug, Clone)]
pub struct Entry<R, A> {
    pub request: R,
    pub told: Told<A>,
    /// Attempts made (retries included).
    pub attempts: u32,
    /// Acknowledged by a read after an earlier attempt ended ambiguous and the retry was
    /// refused because that attempt had applied (a version-gated or state-gated call).
    pub by_read: bool,
    /// For unknown outcomes: what the end state showed.
    pub resolution: Option<Found>,
}

impl<R, A> Entry<R, A> {
    pub fn ack(&self) -> Option<&A> {
        match &self.told {
            Told::Acknowledged(ack) => Some(ack),
            _ => None,
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self.told, Told::Unknown(_))
    }

    /// Records what the end state showed for an unknown outcome (ignored for the others).
    pub fn resolve(&mut self, found: Found) {
        if self.is_unknown() {
            self.resolution = Some(found);
        }
    }

    /// Acknowledged, or unknown and found present: the effect is (or must be) there.
    pub fn took_effect(&self) -> bool {
        match self.told {
            Told::Acknowledged(_) => true,
            Told::Unknown(_) => self.resolution.is_some_and(Found::present),
            Told::Refused(_) => false,
        }
    }
}

/// Every call of a workload, shared by its clients.
#[derive(Debug)]
pub struct Ledger<R, A> {
    entries: Mutex<Vec<Entry<R, A>>>,
}

impl<R, A> Default for Ledger<R, A> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
        }
    }
}

impl<R: Clone, A: Clone> Ledger<R, A> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&self, request: R, told: Told<A>, attempts: u32, by_read: bool) {
        self.entries.lock().unwrap().push(Entry {
            request,
            told,
            attempts,
            by_read,
            resolution: None,
        });
    }

    /// Every entry so far, in the order recorded.
    pub fn entries(&self) -> Vec<Entry<R, A>> {
        self.entries.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The figures of one kind of operation (or of all of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub calls: usize,
    pub acknowledged: usize,
    pub by_read: usize,
    pub refused: usize,
    pub refused_codes: BTreeMap<String, usize>,
    pub unknown: usize,
    pub present: usize,
    pub absent: usize,
    pub more_than_once: usize,
    pub unresolved: usize,
    pub retries: usize,
}

impl Tally {
    fn add<R, A>(&mut self, entry: &Entry<R, A>) {
        self.calls += 1;
        self.retries += entry.attempts.saturating_sub(1) as usize;
        match &entry.told {
            Told::Acknowledged(_) => {
                self.acknowledged += 1;
                self.by_read += usize::from(entry.by_read);
            }
            Told::Refused(code) => {
                self.refused += 1;
                *self.refused_codes.entry(format!("{code:?}")).or_default() += 1;
            }
            Told::Unknown(_) => {
                self.unknown += 1;
                match entry.resolution {
                    Some(Found::Absent) => self.absent += 1,
                    Some(Found::Once) => self.present += 1,
                    Some(Found::Times(_)) => self.more_than_once += 1,
                    None => self.unresolved += 1,
                }
            }
        }
    }

    /// Per kind, in name order, and the total.
    pub fn of<R: Operation, A>(entries: &[Entry<R, A>]) -> (BTreeMap<&'static str, Tally>, Tally) {
        let mut kinds: BTreeMap<&'static str, Tally> = BTreeMap::new();
        let mut total = Tally::default();
        for entry in entries {
            kinds.entry(entry.request.kind()).or_default().add(entry);
            total.add(entry);
        }
        (kinds, total)
    }
}

impl fmt::Display for Tally {
    /// `acknowledged 812 (3 by read), refused 12, unknown 9 (present 4, absent 5)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "acknowledged {}", self.acknowledged)?;
        if self.by_read > 0 {
            write!(f, " ({} by read)", self.by_read)?;
        }
        write!(f, ", refused {}", self.refused)?;
        if !self.refused_codes.is_empty() {
            let codes: Vec<String> = self
                .refused_codes
                .iter()
                .map(|(code, n)| format!("{code} {n}"))
                .collect();
            write!(f, " ({})", codes.join(", "))?;
        }
        write!(
            f,
            ", unknown {} (present {}, absent {}",
            self.unknown, self.present, self.absent
        )?;
        if self.more_than_once > 0 {
            write!(f, ", more than once {}", self.more_than_once)?;
        }
        if self.unresolved > 0 {
            write!(f, ", unresolved {}", self.unresolved)?;
        }
        write!(f, ")")
    }
}

/// One line per kind: `  create_customer  calls 230: acknowledged ...`.
pub fn tally_table(kinds: &BTreeMap<&'static str, Tally>) -> String {
    let width = kinds.keys().map(|k| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (kind, tally) in kinds {
        let _ = writeln!(
            out,
            "  {kind:<width$}  calls {:>5}, retries {:>4}: {tally}",
            tally.calls, tally.retries
        );
    }
    out
}

/// When a client retries a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Not idempotent (it would apply twice; e.g. a create without a request id): retried
    /// only when the request provably never reached the server.
    IfNeverSent,
    /// Idempotent (a request id its retries repeat, or version-gated, state-gated, or keyed
    /// by a unique reference): retried after any failure that is not a definite answer.
    Always,
}

/// Why a call failed in the end.
#[derive(Debug)]
pub enum Failure {
    /// A definite answer: nothing happened (by this attempt).
    Refused(Status),
    /// No trustworthy answer: it may or may not have applied.
    Unknown(String),
}

/// The end of [`call`].
#[derive(Debug)]
pub struct Attempted<T> {
    pub result: Result<T, Failure>,
    pub attempts: u32,
    /// An earlier attempt ended without an answer: a later refusal (ABORTED on a version,
    /// FAILED_PRECONDITION on a state) may be that attempt's own effect.
    pub ambiguous_before: bool,
}

/// The attempts and delays of [`call`].
#[derive(Debug, Clone, Copy)]
pub struct CallPolicy {
    pub attempts: u32,
    /// Deadline of one attempt; past it the outcome is unknown.
    pub timeout: Duration,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            attempts: 40,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Whether `status` says the request never reached the server: the connection it needed was
/// refused or could not be made (tonic's `ConnectError` in the source chain; hyper's "tcp
/// connect error").
pub fn never_sent(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::ConnectError>() {
            return true;
        }
        source = error.source();
    }
    status.code() == Code::Unavailable && status.message().contains("tcp connect error")
}

/// Whether `code` is a definite answer of the server: the call did not apply.
pub fn is_refusal(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Unauthenticated
            | Code::ResourceExhausted
    )
}

/// Makes one logical call: `op` once, then again as `retry` allows, each attempt within
/// `policy.timeout`.
pub async fn call<T, F, Fut>(retry: Retry, policy: CallPolicy, mut op: F) -> Attempted<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut ambiguous_before = false;
    let mut attempts = 0;
    loop {
        attempts += 1;
        // `None`: the request never reached the server; `Some(why)`: it may have.
        let failure = match tokio::time::timeout(policy.timeout, op()).await {
            Ok(Ok(value)) => {
                return Attempted {
                    result: Ok(value),
                    attempts,
                    ambiguous_before,
                };
            }
            Ok(Err(status)) if is_refusal(status.code()) => {
                return Attempted {
                    result: Err(Failure::Refused(status)),
                    attempts,
                    ambiguous_before,
                };
            }
            Ok(Err(status)) if never_sent(&status) => None,
            Ok(Err(status)) => Some(format!("{:?}: {}", status.code(), status.message())),
            Err(_) => Some(format!("no answer within {:?}", policy.timeout)),
        };
        let retryable = failure.is_none() || retry == Retry::Always;
        if !retryable || attempts >= policy.attempts {
            let result = match failure {
                // Not one attempt reached the server: nothing applied, and the client knows.
                None if !ambiguous_before => Failure::Refused(Status::unavailable(
                    "never sent: the server refused every connection",
                )),
                None => Failure::Unknown(
                    "an earlier attempt got no answer; the server then stayed down".to_owned(),
                ),
                Some(why) => Failure::Unknown(why),
            };
            return Attempted {
                result: Err(result),
                attempts,
                ambiguous_before,
            };
        }
        ambiguous_before |= failure.is_some();
        let delay = 50 + 25 * u64::from(attempts.min(20));
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
}

/// What the checks found wrong, by category, for one report.
#[derive(Debug, Default)]
pub struct Findings {
    by_category: BTreeMap<Category, Vec<String>>,
}

/// The kinds of things the checks find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    /// An acknowledged effect (or an unknown one found on one side) missing.
    Lost,
    /// An effect present more than once.
    Duplicated,
    /// Present, but no client asked for it.
    Unasked,
    /// Present once, but not as the clients were told (a version, a value, a sum).
    Mismatched,
    /// A process exited without being told to, or panicked.
    Process,
    /// The run did not do the work it must (too few operations, a fault kind missing).
    Workload,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::Lost,
        Category::Duplicated,
        Category::Unasked,
        Category::Mismatched,
        Category::Process,
        Category::Workload,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::Lost => "lost",
            Category::Duplicated => "duplicated",
            Category::Unasked => "unasked",
            Category::Mismatched => "mismatched",
            Category::Process => "process",
            Category::Workload => "workload",
        }
    }
}

impl Findings {
    pub fn add(&mut self, category: Category, finding: impl Into<String>) {
        self.by_category
            .entry(category)
            .or_default()
            .push(finding.into());
    }

    /// Adds `finding` unless `ok`.
    pub fn check(&mut self, ok: bool, category: Category, finding: impl FnOnce() -> String) {
        if !ok {
            self.add(category, finding());
        }
    }

    pub fn count(&self, category: Category) -> usize {
        self.by_category.get(&category).map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.by_category.values().all(Vec::is_empty)
    }

    /// `lost 0, duplicated 0, unasked 0, mismatched 0, process 0, workload 0`.
    pub fn counts(&self) -> String {
        Category::ALL
            .iter()
            .map(|c| format!("{} {}", c.name(), self.count(*c)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every finding, at most `max` per category (the rest counted).
    pub fn report(&self, max: usize) -> String {
        let mut out = String::new();
        for (category, found) in &self.by_category {
            if found.is_empty() {
                continue;
            }
            let _ = writeln!(out, "{} ({}):", category.name(), found.len());
            for finding in found.iter().take(max) {
                let _ = writeln!(out, "  - {finding}");
            }
            if found.len() > max {
                let _ = writeln!(out, "  ... and {} more", found.len() - max);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Op(&'static str);

    impl Operation for Op {
        fn kind(&self) -> &'static str {
            self.0
        }
    }

    #[test]
    fn tallies_count_each_outcome_and_resolution() {
        let ledger: Ledger<Op, u32> = Ledger::new();
        ledger.record(Op("a"), Told::Acknowledged(1), 1, false);
        ledger.record(Op("a"), Told::Acknowledged(2), 3, true);
        ledger.record(Op("a"), Told::Refused(Code::Aborted), 1, false);
        ledger.record(Op("b"), Told::Unknown("timeout".into()), 1, false);
        ledger.record(Op("b"), Told::Unknown("reset".into()), 1, false);
        let mut entries = ledger.entries();
        entries[3].resolve(Found::of(1));
        entries[4].resolve(Found::of(0));
        entries[0].resolve(Found::of(0));
        let (kinds, total) = Tally::of(&entries);
        assert_eq!(total.calls, 5);
        assert_eq!(total.acknowledged, 2);
        assert_eq!(total.by_read, 1);
        assert_eq!(total.retries, 2);
        assert_eq!((total.unknown, total.present, total.absent), (2, 1, 1));
        assert_eq!(kinds["a"].refused_codes["Aborted"], 1);
        assert!(entries[3].took_effect() && !entries[4].took_effect());
        assert_eq!(
            total.to_string(),
            "acknowledged 2 (1 by read), refused 1 (Aborted 1), unknown 2 (present 1, absent 1)"
        );
    }

    #[tokio::test]
    async fn a_call_to_a_port_nobody_listens_on_was_never_sent() {
        use tandem_proto::crm::v1::{GetCustomerRequest, crm_service_client::CrmServiceClient};
        let port = crate::free_port();
        let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect_lazy();
        let status = CrmServiceClient::new(channel)
            .get_customer(GetCustomerRequest { id: "x".into() })
            .await
            .unwrap_err();
        assert!(never_sent(&status), "{status:?}");
        assert!(!never_sent(&Status::unavailable(
            "database unavailable, retry later"
        )));
        assert!(!never_sent(&Status::unknown("transport error")));
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_and_a_lost_answer_is_not_unless_idempotent() {
        let policy = CallPolicy {
            attempts: 5,
            timeout: Duration::from_secs(1),
        };
        let mut tries = 0;
        let connect_refused = || Status::unavailable("tcp connect error");
        let done = call(Retry::IfNeverSent, policy, || {
            tries += 1;
            let answer = if tries < 3 {
                Err(connect_refused())
            } else {
                Ok(tries)
            };
            async move { answer }
        })
        .await;
        assert_eq!((done.result.unwrap(), done.attempts), (3, 3));
        assert!(!done.ambiguous_before);

        let lost = call(Retry::IfNeverSent, policy, || async {
            Err::<(), _>(Status::unknown("transport error: connection reset"))
        })
        .await;
        assert!(matches!(lost.result, Err(Failure::Unknown(_))));
        assert_eq!(lost.attempts, 1);

        let mut tries = 0;
        let retried: Attempted<()> = call(Retry::Always, policy, || {
            tries += 1;
            let answer = if tries == 1 {
                Err(Status::unknown("transport error"))
            } else {
                Err(Status::aborted("version moved"))
            };
            async move { answer }
        })
        .await;
        assert!(matches!(retried.result, Err(Failure::Refused(_))));
        assert!(retried.ambiguous_before);

        let down = call(Retry::IfNeverSent, policy, || async {
            Err::<(), _>(connect_refused())
        })
        .await;
        assert!(
            matches!(down.result, Err(Failure::Refused(ref s)) if s.code() == Code::Unavailable),
            "never sent at all: nothing applied"
        );
    }
}

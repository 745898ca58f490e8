//! Idempotent requests (AIP-155): a caller names a request with a `request_id` (a UUID) so that
//! a retry after a lost answer does not act twice.
//!
//! A service's transaction [`claim`]s the id first, does its work, [`record`]s the answer it
//! is about to give (the encoded response message) and commits: the id, a fingerprint of the
//! request and the answer commit together with the effect, or not at all. A later call with the
//! same id then finds the row:
//!
//! - same method and fingerprint: [`Claim::Replay`] with the first answer, nothing done again;
//! - anything else: [`IdempotencyError::Reused`] (the services answer ALREADY_EXISTS).
//!
//! Two calls with the same id at the same time meet on the table's primary key: the second
//! insert waits for the first transaction and, once that commits, sees its row and replays it
//! (if the first rolls back, the second proceeds as the first). The claim is the first write
//! of the transaction, so the waiting side holds no other lock while it waits.
//!
//! Ids are scoped to the caller's subject (the token's `sub`, or the client certificate's
//! identity): the same id sent by another subject is another request, and never sees the
//! first subject's answer. Failed calls leave nothing behind (their transaction rolls back),
//! so retrying one acts again.
//!
//! Rows are kept for [`IdempotencySettings::retention_hours`] and then deleted by the
//! [`Pruner`], in small batches. The table each service's migrations create:
//!
//! ```sql
//! CREATE TABLE idempotent_requests (
//!     subject     TEXT NOT NULL,
//!     request_id  UUID NOT NULL,
//!     method      TEXT NOT NULL,
//!     fingerprint BYTEA NOT NULL,
//!     response    BYTEA,
//!     created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
//!     PRIMARY KEY (subject, request_id)
//! );
//! CREATE INDEX idempotent_requests_created_at ON idempotent_requests (created_at);
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::{metrics_names as m, shutdown::sleep_or_cancel, validation::FieldViolation};

/// The request field every idempotent RPC names its id in.
pub const FIELD: &str = "request_id";
/// `google.rpc.ErrorInfo.reason` of a request id used for a different request.
pub const REUSED: &str = "REQUEST_ID_REUSED";

/// How long request ids are honoured and how they are pruned (`<SERVICE>__IDEMPOTENCY__*`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct IdempotencySettings {
    /// A request id is honoured for at least this many hours after its first call; after
    /// that the same id acts as a new request. Negative counts as 0.
    pub retention_hours: i32,
    /// How often expired ids are pruned, in seconds.
    pub prune_interval_s: u64,
    /// Most rows deleted per statement while pruning.
    pub prune_batch: i64,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self {
            retention_hours: 24,
            prune_interval_s: 300,
            prune_batch: 1_000,
        }
    }
}

/// One idempotent call: who sent it, its id, the method and a fingerprint of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    subject: String,
    request_id: Uuid,
    method: &'static str,
    fingerprint: Vec<u8>,
}

impl RequestKey {
    /// The key of `request` for `method` (the full gRPC path), or `None` when its request id
    /// (read, and cleared for the fingerprint, through `request_id`) is empty: such a call is
    /// not deduplicated. A request id that is not a UUID is a violation of [`FIELD`].
    pub fn of<M: prost::Message + Clone>(
        method: &'static str,
        subject: Option<String>,
        request: &M,
        request_id: impl FnOnce(&mut M) -> &mut String,
    ) -> Result<Option<Self>, FieldViolation> {
        let mut rest = request.clone();
        let id = std::mem::take(request_id(&mut rest));
        let Some(request_id) = parse_request_id(&id)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            subject: subject.unwrap_or_default(),
            request_id,
            method,
            fingerprint: fingerprint(method, &rest),
        }))
    }

    pub fn request_id(&self) -> Uuid {
        self.request_id
    }
}

/// A request id: empty (not deduplicated) or a UUID other than the nil UUID.
pub fn parse_request_id(text: &str) -> Result<Option<Uuid>, FieldViolation> {
    if text.is_empty() {
        return Ok(None);
    }
    match Uuid::try_parse(text) {
        Ok(id) if !id.is_nil() && text.len() == 36 => Ok(Some(id)),
        _ => Err(FieldViolation::new(
            FIELD,
            "a UUID in its 36-character form, e.g. 0190d1f4-6c1e-7f3a-9b52-3f1c2d4e5a6b (not the \
             nil UUID), or empty",
        )),
    }
}

/// SHA-256 of the method and the request's protobuf encoding (without its request id).
/// prost encodes fields in field-number order, so equal messages encode equally.
fn fingerprint(method: &str, request: &impl prost::Message) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0]);
    hasher.update(request.encode_to_vec());
    hasher.finalize().to_vec()
}

/// What [`claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The id is new: do the work, [`record`] the answer, commit.
    Fresh,
    /// The same request was answered before: this is its encoded response.
    Replay(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error(
        "request_id {request_id} was already used for a different request; send a new \
         request_id for a new request"
    )]
    Reused { request_id: Uuid },
    #[error("request id store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("a stored response cannot be decoded: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// Claims `key` inside the caller's transaction (see the module documentation). Waits while
/// another transaction holds the same id, then replays its answer.
pub async fn claim(conn: &mut PgConnection, key: &RequestKey) -> Result<Claim, IdempotencyError> {
    loop {
        let inserted = sqlx::query(
            "INSERT INTO idempotent_requests (subject, request_id, method, fingerprint) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (subject, request_id) DO NOTHING",
        )
        .bind(&key.subject)
        .bind(key.request_id)
        .bind(key.method)
        .bind(&key.fingerprint)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(Claim::Fresh);
        }
        // A new statement: it sees the row the conflicting transaction committed.
        let stored: Option<(String, Vec<u8>, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT method, fingerprint, response FROM idempotent_requests \
             WHERE subject = $1 AND request_id = $2",
        )
        .bind(&key.subject)
        .bind(key.request_id)
        .fetch_optional(&mut *conn)
        .await?;
        match stored {
            Some((method, fingerprint, Some(response)))
                if method == key.method && fingerprint == key.fingerprint =>
            {
                return Ok(Claim::Replay(response));
            }
            Some(_) => {
                return Err(IdempotencyError::Reused {
                    request_id: key.request_id,
                });
            }
            // Pruned between the two statements: claim it again.
            None => continue,
        }
    }
}

/// Stores the encoded answer to `key`'s request, in the transaction that claimed it.
pub async fn record(
    conn: &mut PgConnection,
    key: &RequestKey,
    response: &[u8],
) -> Result<(), IdempotencyError> {
    sqlx::query(
        "UPDATE idempotent_requests SET response = $3 WHERE subject = $1 AND request_id = $2",
    )
    .bind(&key.subject)
    .bind(key.request_id)
    .bind(response)
    .execute(conn)
    .await?;
    Ok(())
}

/// An idempotent call as the domain sees it: its key, and how its result of type `T` is
/// encoded as the response message the caller gets.
#[derive(Debug, Clone)]
pub struct Once<T> {
    key: RequestKey,
    encode: fn(&T) -> Vec<u8>,
}

impl<T> Once<T> {
    pub fn new(key: RequestKey, encode: fn(&T) -> Vec<u8>) -> Self {
        Self { key, encode }
    }

    pub fn key(&self) -> &RequestKey {
        &self.key
    }
}

/// At the start of a transaction: the answer to replay when `once` names a request already
/// answered, `None` when the work is to be done (or the call is not idempotent).
pub async fn replay<T>(
    conn: &mut PgConnection,
    once: Option<&Once<T>>,
) -> Result<Option<Vec<u8>>, IdempotencyError> {
    let Some(once) = once else {
        return Ok(None);
    };
    match claim(conn, &once.key).await? {
        Claim::Fresh => Ok(None),
        Claim::Replay(response) => Ok(Some(response)),
    }
}

/// Just before the commit: stores `result`, as its response message, for later retries.
pub async fn remember<T>(
    conn: &mut PgConnection,
    once: Option<&Once<T>>,
    result: &T,
) -> Result<(), IdempotencyError> {
    match once {
        Some(once) => record(conn, &once.key, &(once.encode)(result)).await,
        None => Ok(()),
    }
}

/// Either the result a call just produced or the encoded answer a retry replays.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer<T> {
    Fresh(T),
    Replayed(Vec<u8>),
}

impl<T> Answer<T> {
    /// The response message: `to_proto` of a fresh result, or the replayed one decoded.
    pub fn reply<M: prost::Message + Default>(
        self,
        to_proto: impl FnOnce(&T) -> M,
    ) -> Result<M, IdempotencyError> {
        match self {
            Self::Fresh(result) => Ok(to_proto(&result)),
            Self::Replayed(response) => M::decode(response.as_slice()).map_err(Into::into),
        }
    }
}

impl IdempotencyError {
    /// The status a service answers with: ALREADY_EXISTS naming `request_id` (a
    /// `google.rpc.ErrorInfo` with reason `REQUEST_ID_REUSED` in `domain`, and a
    /// `google.rpc.BadRequest` field violation), or the database's status, or INTERNAL.
    pub fn into_status(self, domain: &str) -> tonic::Status {
        match self {
            Self::Reused { request_id } => {
                let mut details = tonic_types::ErrorDetails::with_error_info(
                    REUSED,
                    domain,
                    [
                        ("field".to_owned(), FIELD.to_owned()),
                        ("request_id".to_owned(), request_id.to_string()),
                    ],
                );
                details.add_bad_request_violation(
                    FIELD,
                    "already used for a different request by this caller",
                );
                tonic::Status::with_error_details(
                    tonic::Code::AlreadyExists,
                    Self::Reused { request_id }.to_string(),
                    details,
                )
            }
            Self::Database(error) => crate::grpc::database_status(&error),
            Self::Decode(error) => crate::grpc::internal("stored response undecodable", &error),
        }
    }
}

/// Deletes request ids older than the retention period, in batches, every
/// `prune_interval_s`. Every replica may run one: batches skip rows another one is deleting.
pub struct Pruner {
    pool: PgPool,
    settings: IdempotencySettings,
}

impl Pruner {
    pub fn new(pool: PgPool, settings: &IdempotencySettings) -> Self {
        Self {
            pool,
            settings: settings.clone(),
        }
    }

    /// Prunes now and then every interval, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let every = Duration::from_secs(self.settings.prune_interval_s.max(1));
        loop {
            match self.prune(&shutdown).await {
                Ok(0) => {}
                Ok(pruned) => tracing::debug!(pruned, "pruned expired request ids"),
                Err(error) => tracing::warn!(%error, "pruning request ids failed; next round"),
            }
            if sleep_or_cancel(every, &shutdown).await {
                return;
            }
        }
    }

    /// Deletes every expired row, one batch per statement; returns how many.
    pub async fn prune(&self, shutdown: &CancellationToken) -> Result<u64, sqlx::Error> {
        let batch = self.settings.prune_batch.max(1);
        let mut total = 0;
        loop {
            let pruned = sqlx::query(
                "DELETE FROM idempotent_requests WHERE ctid IN ( \
                     SELECT ctid FROM idempotent_requests \
                     WHERE created_at < now() - make_interval(hours => $1) \
                     LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(self.settings.retention_hours.max(0))
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
            metrics::counter!(m::IDEMPOTENCY_PRUNED).increment(pruned);
            total += pruned;
            if pruned < u64::try_from(batch).unwrap_or(u64::MAX) || shutdown.is_cancelled() {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Request {
        #[prost(string, tag = "1")]
        sku: String,
        #[prost(int64, tag = "2")]
        quantity: i64,
        #[prost(string, tag = "3")]
        request_id: String,
    }

    const ID: &str = "0190d1f4-6c1e-7f3a-9b52-3f1c2d4e5a6b";

    fn key(method: &'static str, subject: &str, request: &Request) -> Option<RequestKey> {
        RequestKey::of(method, Some(subject.to_owned()), request, |r| {
            &mut r.request_id
        })
        .unwrap()
    }

    fn request(sku: &str, quantity: i64, request_id: &str) -> Request {
        Request {
            sku: sku.to_owned(),
            quantity,
            request_id: request_id.to_owned(),
        }
    }

    #[test]
    fn an_empty_request_id_is_not_deduplicated() {
        assert_eq!(key("/a/B", "alice", &request("S", 1, "")), None);
    }

    #[test]
    fn the_fingerprint_covers_the_request_but_not_its_id() {
        let first = key("/a/B", "alice", &request("S", 1, ID)).unwrap();
        assert_eq!(first.request_id().to_string(), ID);
        // The same request under another id fingerprints the same.
        let other_id = key(
            "/a/B",
            "alice",
            &request("S", 1, "0190d1f4-6c1e-7f3a-9b52-3f1c2d4e5a6c"),
        )
        .unwrap();
        assert_eq!(first.fingerprint, other_id.fingerprint);
        // Any field, or the method, changes it.
        for changed in [
            key("/a/B", "alice", &request("S", 2, ID)).unwrap(),
            key("/a/B", "alice", &request("T", 1, ID)).unwrap(),
            key("/a/C", "alice", &request("S", 1, ID)).unwrap(),
        ] {
            assert_ne!(first.fingerprint, changed.fingerprint);
        }
        // The subject scopes the id but is not part of the fingerprint.
        let bob = key("/a/B", "bob", &request("S", 1, ID)).unwrap();
        assert_eq!(first.fingerprint, bob.fingerprint);
        assert_ne!(first, bob);
    }

    #[test]
    fn malformed_request_ids_name_the_field() {
        for bad in [
            "x",
            "00000000-0000-0000-0000-000000000000",
            "0190d1f46c1e7f3a9b523f1c2d4e5a6b",
            "{0190d1f4-6c1e-7f3a-9b52-3f1c2d4e5a6b}",
            "urn:uuid:0190d1f4-6c1e-7f3a-9b52-3f1c2d4e5a6b",
        ] {
            let error = RequestKey::of("/a/B", None, &request("S", 1, bad), |r| &mut r.request_id)
                .unwrap_err();
            assert_eq!(error.field, "request_id", "{bad}");
        }
        assert!(parse_request_id(&ID.to_uppercase()).unwrap().is_some());
    }
}

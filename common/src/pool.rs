//! The services' database handle: sqlx's pool plus a short list of warm connections.
//!
//! sqlx pings every connection it takes back into its pool (a Sync, then a wait for
//! ReadyForQuery): one round trip per request on top of the request's own statements, a third
//! of a GetCustomer's. A [`Lease`] that ends cleanly puts its connection on a warm list
//! instead, and the next [`Db::acquire`] takes it from there without a round trip. A lease ends
//! cleanly when nothing is in flight or queued on its connection (checked without waiting:
//! [`idle_now`]) and no error of the database being unreachable was noted since it began
//! ([`note_error`]).
//!
//! A lease whose connection is not idle when it ends (a statement in flight, dropped by a
//! timeout, a select, or a gRPC call given up: [`crate::limits::call_given_up`]) has its
//! connection closed: the statement's answer (an error, say) would otherwise be read by the
//! next request as its own. It is not sent through sqlx's ping either: over TLS, a ping that
//! reads a failure can hang and hold the pool's slot for good (seen with sqlx 0.8.6 and
//! rustls). Leases begun before a noted error go back through sqlx's pool, whose ping closes
//! the broken connections; so do warm connections idle for longer than `idle_limit` and those
//! that left sqlx's pool more than [`BACK_TO_THE_POOL_AFTER`] ago, so its lifetime and idle
//! limits still apply.
//!
//! A [`Tx`] is a transaction on a lease: `BEGIN` on [`Db::begin`], `COMMIT` on [`Tx::commit`];
//! dropped while open, it rolls back on a task of its own and the lease ends there. It is open
//! from before its `BEGIN` is sent until its `COMMIT` is answered, so a caller that gives up
//! at any point (a deadline) leaves no connection inside a transaction.

use std::{
    ops::{Deref, DerefMut},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{Connection, Executor, PgConnection, PgPool, Postgres, pool::PoolConnection};

/// How long a connection may go from warm list to warm list before it goes back through
/// sqlx's pool once (which applies the pool's `max_lifetime`).
pub const BACK_TO_THE_POOL_AFTER: Duration = Duration::from_secs(60);

/// Bumped by every error of the database being unreachable: leases begun before it, and warm
/// connections put away before it, go back through sqlx's pool and its ping.
static TROUBLE: AtomicU64 = AtomicU64::new(0);

/// Notes an error a lease's statement returned: one of the database being unreachable (or of
/// the protocol) sends every connection leased or warm now back through sqlx's ping, which
/// closes the broken ones. Call it where database errors become the service's own.
pub fn note_error(error: &sqlx::Error) {
    if crate::db::is_unavailable(error) || matches!(error, sqlx::Error::Protocol(_)) {
        TROUBLE.fetch_add(1, Ordering::SeqCst);
    }
}

struct Warm {
    conn: PoolConnection<Postgres>,
    /// When it went on the warm list.
    since: Instant,
    /// When it left sqlx's pool.
    left_pool: Instant,
    trouble: u64,
}

struct Shelf {
    warm: Mutex<Vec<Warm>>,
    /// Set by [`Db::close`]: no connection goes warm any more.
    closed: AtomicBool,
    /// At most this many warm connections: half the pool's maximum, so statements run on
    /// sqlx's pool itself (readiness, pruning) always find room.
    most: usize,
    idle_limit: Duration,
}

impl Shelf {
    fn put(&self, conn: PoolConnection<Postgres>, left_pool: Instant, trouble: u64) {
        let fresh = !self.closed.load(Ordering::SeqCst)
            && trouble == TROUBLE.load(Ordering::SeqCst)
            && left_pool.elapsed() < BACK_TO_THE_POOL_AFTER;
        if !fresh {
            return; // dropped: back through sqlx's pool
        }
        if let Ok(mut warm) = self.warm.lock()
            && warm.len() < self.most
        {
            warm.push(Warm {
                conn,
                since: Instant::now(),
                left_pool,
                trouble,
            });
        }
    }

    /// The most recently used warm connection still fit for use; the unfit ones go back
    /// through sqlx's pool.
    fn take(&self) -> Option<Warm> {
        let trouble = TROUBLE.load(Ordering::SeqCst);
        let mut stale = Vec::new();
        let found = {
            let mut warm = self.warm.lock().ok()?;
            loop {
                match warm.pop() {
                    Some(w)
                        if w.trouble == trouble
                            && w.since.elapsed() < self.idle_limit
                            && w.left_pool.elapsed() < BACK_TO_THE_POOL_AFTER =>
                    {
                        break Some(w);
                    }
                    Some(w) => stale.push(w),
                    None => break None,
                }
            }
        };
        drop(stale); // outside the lock: each drop hands a connection back to sqlx
        found
    }

    /// Hands every warm connection idle for `idle_limit` back to sqlx's pool.
    fn sweep(&self) {
        let stale: Vec<Warm> = match self.warm.lock() {
            Ok(mut warm) => {
                let (stale, keep) = std::mem::take(&mut *warm)
                    .into_iter()
                    .partition(|w| w.since.elapsed() >= self.idle_limit);
                *warm = keep;
                stale
            }
            Err(_) => return,
        };
        drop(stale);
    }

    fn len(&self) -> usize {
        self.warm.lock().map(|w| w.len()).unwrap_or(0)
    }
}

/// sqlx's pool (which it dereferences to, for statements that need no lease of their own)
/// and the warm list.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    shelf: Arc<Shelf>,
}

impl Db {
    /// `idle_limit`: a warm connection idle for that long goes back through sqlx's pool (and
    /// its check of idle connections, `database.check_idle_after_ms`).
    pub fn new(pool: PgPool, idle_limit: Duration) -> Self {
        let most = (pool.options().get_max_connections() as usize / 2).max(1);
        Self {
            pool,
            shelf: Arc::new(Shelf {
                warm: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
                most,
                idle_limit,
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection: a warm one if there is one, else one from sqlx's pool.
    pub async fn acquire(&self) -> Result<Lease, sqlx::Error> {
        if let Some(warm) = self.shelf.take() {
            return Ok(Lease {
                conn: Some(warm.conn),
                left_pool: warm.left_pool,
                trouble: warm.trouble,
                shelf: self.shelf.clone(),
                discard: false,
            });
        }
        let trouble = TROUBLE.load(Ordering::SeqCst);
        let conn = self.pool.acquire().await?;
        Ok(Lease {
            conn: Some(conn),
            left_pool: Instant::now(),
            trouble,
            shelf: self.shelf.clone(),
            discard: false,
        })
    }

    /// A transaction on a lease of its own.
    ///
    /// The [`Tx`] exists before `BEGIN` is sent: a caller that gives up while `BEGIN` is in
    /// flight (a client's deadline) drops it open, so it rolls back. Were the lease dropped
    /// instead, its connection would go warm and enter the transaction once `BEGIN` arrived;
    /// the next request's statements would then be acknowledged and never committed.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let mut tx = Tx {
            lease: Some(self.acquire().await?),
        };
        tx.execute("BEGIN").await?;
        Ok(tx)
    }

    /// Closes sqlx's pool, after handing it every warm connection (it waits for all of its
    /// connections to come back).
    pub async fn close(&self) {
        self.shelf.closed.store(true, Ordering::SeqCst);
        let warm = self
            .shelf
            .warm
            .lock()
            .map(|mut warm| std::mem::take(&mut *warm))
            .unwrap_or_default();
        drop(warm);
        self.pool.close().await;
    }

    /// Warm connections: how many there are now (they count as in use in sqlx's pool).
    pub fn warm(&self) -> usize {
        self.shelf.len()
    }

    /// Hands warm connections idle for the idle limit back to sqlx's pool; call it now and
    /// then (the pool metrics do), so a quiet service keeps no connection out of sqlx's reach.
    pub fn sweep(&self) {
        self.shelf.sweep();
    }
}

impl Deref for Db {
    type Target = PgPool;

    fn deref(&self) -> &PgPool {
        &self.pool
    }
}

/// A connection for one request; it dereferences to the connection.
pub struct Lease {
    conn: Option<PoolConnection<Postgres>>,
    left_pool: Instant,
    trouble: u64,
    shelf: Arc<Shelf>,
    /// Close the connection at the end instead of reusing it.
    discard: bool,
}

impl Lease {
    /// Closes the connection when the lease ends (its state is unknown, e.g. maybe still in
    /// a transaction).
    fn discard(&mut self) {
        self.discard = true;
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}

impl Deref for Lease {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        // Some from creation until drop.
        self.conn
            .as_deref()
            .unwrap_or_else(|| unreachable!("a lease holds its connection"))
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("a lease holds its connection"))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if self.discard {
            return;
        }
        if crate::limits::call_given_up() || !idle_now(&mut conn) {
            // A statement may be in flight: closed (a Terminate, bounded by sqlx's close
            // timeout), neither warm nor through sqlx's ping (the module's documentation).
            conn.close_on_drop();
        } else {
            self.shelf.put(conn, self.left_pool, self.trouble);
        }
    }
}

/// Whether nothing is in flight or queued on `conn`, found without waiting: sqlx's
/// wait-until-ready polled once. It returns at once when no answer is awaited, reads an answer
/// that already arrived, and is pending while one is still on its way (the connection is
/// then busy). An error read (a dropped statement's failure) leaves the connection unfit.
fn idle_now(conn: &mut PgConnection) -> bool {
    use futures::FutureExt;
    // Polling the socket needs the runtime the connection was made on.
    tokio::runtime::Handle::try_current().is_ok()
        && matches!(Connection::flush(conn).now_or_never(), Some(Ok(())))
}

/// A transaction on a lease: dereferences to the connection; [`Tx::commit`] ends it, and
/// dropping it open rolls it back.
pub struct Tx {
    lease: Option<Lease>,
}

impl Tx {
    /// Commits. The transaction keeps its lease until `COMMIT` is answered: given up while
    /// it is in flight, it is dropped open, and the rollback that follows reads the COMMIT's
    /// answer first (a failed COMMIT then closes the connection instead of handing its error
    /// to the next request).
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let committed = match self.lease.as_mut() {
            Some(lease) => lease.execute("COMMIT").await,
            None => return Ok(()),
        };
        // Answered: the transaction is over either way.
        let lease = self.lease.take();
        if let (Err(_), Some(mut lease)) = (&committed, lease) {
            // Whether the COMMIT took is unknown: the connection is not reused.
            lease.discard();
        }
        committed.map(|_| ())
    }

    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        match self.lease.take() {
            Some(lease) => roll_back(lease).await,
            None => Ok(()),
        }
    }
}

/// Boxed, so the future is known to be `Send` where a transaction is dropped (sqlx's
/// executor traits are not general enough for the compiler to prove it through `spawn`).
fn roll_back(mut lease: Lease) -> futures::future::BoxFuture<'static, Result<(), sqlx::Error>> {
    Box::pin(async move {
        let conn: &mut PgConnection = &mut lease;
        let rolled_back = conn.execute("ROLLBACK").await;
        if rolled_back.is_err() {
            // Still in the transaction, maybe: closing the connection ends it.
            lease.discard();
        }
        rolled_back.map(|_| ())
    })
}

impl Deref for Tx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.lease
            .as_deref()
            .unwrap_or_else(|| unreachable!("an open transaction holds its lease"))
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.lease
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("an open transaction holds its lease"))
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        let Some(mut lease) = self.lease.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = roll_back(lease).await {
                        tracing::debug!(%error, "rolling back a dropped transaction failed; its connection is closed");
                    }
                });
            }
            Err(_) => {
                // No runtime to roll back on: closing the connection ends the transaction.
                lease.discard();
            }
        }
    }
}

//! Customer finance, owned by the ERP: credit limit, payment terms, credit hold and the open
//! balance (invoices raise it, payments lower it). Every change writes the row and its
//! `erp.customer.finance_changed` outbox event in one transaction.

pub mod model;
pub(crate) mod store;

use std::collections::HashMap;

use tandem_common::pool::Db;
use tandem_common::{
    idempotency::{self, Answer, Once},
    outbox::{OutboxTx, OutboxWaker},
    validation::FieldViolation,
};
use uuid::Uuid;

pub use model::{
    CreditDecision, Finance, FinanceDefaults, FinanceView, TermsPatch, credit_check, due_date,
};

use crate::{
    error::{Error, Result},
    money::currency_problem,
    products::SOURCE,
};

#[derive(Clone)]
pub struct Finances {
    pool: Db,
    outbox: OutboxWaker,
    defaults: FinanceDefaults,
}

impl Finances {
    pub fn new(pool: Db, outbox: OutboxWaker, defaults: FinanceDefaults) -> Self {
        Self {
            pool,
            outbox,
            defaults,
        }
    }

    /// The finance of a mirrored customer (the defaults while nothing was set).
    #[tracing::instrument(skip(self))]
    pub async fn view(&self, customer_id: Uuid) -> Result<FinanceView> {
        let mut conn = self.pool.acquire().await?;
        if !store::customer_exists(&mut conn, customer_id).await? {
            return Err(Error::not_found("customer", customer_id));
        }
        let finance = store::get(&mut conn, customer_id)
            .await?
            .unwrap_or_else(|| Finance::defaults(customer_id, &self.defaults));
        let uninvoiced_minor = store::uninvoiced_total(&mut conn, customer_id).await?;
        Ok(FinanceView {
            finance,
            uninvoiced_minor,
        })
    }

    /// The finance of each of `customer_ids` (the defaults where nothing was set), without
    /// checking that the customers exist: for lists of customers read just before.
    #[tracing::instrument(skip(self, customer_ids), fields(customers = customer_ids.len()))]
    pub async fn views(&self, customer_ids: &[Uuid]) -> Result<HashMap<Uuid, FinanceView>> {
        let mut conn = self.pool.acquire().await?;
        let mut stored: HashMap<Uuid, Finance> = store::get_many(&mut conn, customer_ids)
            .await?
            .into_iter()
            .map(|finance| (finance.customer_id, finance))
            .collect();
        let uninvoiced: HashMap<Uuid, i64> = store::uninvoiced_totals(&mut conn, customer_ids)
            .await?
            .into_iter()
            .collect();
        Ok(customer_ids
            .iter()
            .map(|id| {
                let finance = stored
                    .remove(id)
                    .unwrap_or_else(|| Finance::defaults(*id, &self.defaults));
                let uninvoiced_minor = uninvoiced.get(id).copied().unwrap_or(0);
                (
                    *id,
                    FinanceView {
                        finance,
                        uninvoiced_minor,
                    },
                )
            })
            .collect())
    }

    /// Changes the terms named in `patch`. The currency changes only while nothing is owed
    /// or pending in the old one. With `expected_version`, fails with `Aborted` (changing
    /// nothing) unless the finance is still at that version (0: never changed).
    #[tracing::instrument(skip(self))]
    pub async fn set_terms(
        &self,
        customer_id: Uuid,
        patch: TermsPatch,
        expected_version: Option<i64>,
    ) -> Result<FinanceView> {
        let mut violations = Vec::new();
        if let Some((limit, currency)) = &patch.credit_limit {
            if *limit < 0 {
                violations.push(FieldViolation::new(
                    "credit_limit.amount_minor",
                    "must not be negative",
                ));
            }
            if let Some(problem) = currency_problem(currency) {
                violations.push(FieldViolation::new("credit_limit.currency_code", problem));
            }
        }
        if patch
            .payment_terms_days
            .is_some_and(|days| !(0..=365).contains(&days))
        {
            violations.push(FieldViolation::new("payment_terms_days", "0..=365"));
        }
        if !violations.is_empty() {
            return Err(Error::Invalid(violations));
        }
        let mut tx = self.outbox.begin(&self.pool).await?;
        if !store::customer_exists(&mut tx, customer_id).await? {
            return Err(Error::not_found("customer", customer_id));
        }
        let current = store::lock_or_create(&mut tx, customer_id, &self.defaults).await?;
        if let Some(expected) = expected_version
            && expected != current.version
        {
            return Err(Error::Aborted(format!(
                "the finance of customer {customer_id} is at version {}, not {expected}; read \
                 it again and retry",
                current.version
            )));
        }
        let uninvoiced_minor = store::uninvoiced_total(&mut tx, customer_id).await?;
        let mut next = current.clone();
        if let Some((limit, currency)) = patch.credit_limit {
            if currency != current.currency
                && (current.open_balance_minor != 0 || uninvoiced_minor != 0)
            {
                return Err(Error::precondition(format!(
                    "the credit currency stays {} while the open balance or uninvoiced orders \
                     are not zero",
                    current.currency
                )));
            }
            next.credit_limit_minor = limit;
            next.currency = currency;
        }
        if let Some(days) = patch.payment_terms_days {
            next.payment_terms_days = days;
        }
        if let Some(hold) = patch.credit_hold {
            next.credit_hold = hold;
        }
        if next == current {
            return Ok(FinanceView {
                finance: current,
                uninvoiced_minor,
            });
        }
        let finance = store::update(&mut tx, &next).await?;
        publish_changed(&mut tx, &finance).await?;
        tx.commit().await?;
        Ok(FinanceView {
            finance,
            uninvoiced_minor,
        })
    }

    /// Records a payment, lowering the open balance. Idempotent by (customer, reference): a
    /// repeat with the same amount changes nothing; with another amount it is ALREADY_EXISTS.
    /// With `once`, a retry of the same request id replays the first answer.
    #[tracing::instrument(skip(self, once))]
    pub async fn record_payment(
        &self,
        customer_id: Uuid,
        amount_minor: i64,
        currency: &str,
        reference: &str,
        once: Option<&Once<FinanceView>>,
    ) -> Result<Answer<FinanceView>> {
        let mut violations = Vec::new();
        if amount_minor <= 0 {
            violations.push(FieldViolation::new(
                "amount.amount_minor",
                "must be positive",
            ));
        }
        if let Some(problem) = currency_problem(currency) {
            violations.push(FieldViolation::new("amount.currency_code", problem));
        }
        let length = reference.chars().count();
        if length == 0 || length > 200 {
            violations.push(FieldViolation::new("reference", "1..=200 characters"));
        }
        violations.extend(crate::text::nul_violation("reference", reference));
        if !violations.is_empty() {
            return Err(Error::Invalid(violations));
        }
        let mut tx = self.outbox.begin(&self.pool).await?;
        if let Some(replay) = idempotency::replay(&mut tx, once).await? {
            return Ok(Answer::Replayed(replay));
        }
        if !store::customer_exists(&mut tx, customer_id).await? {
            return Err(Error::not_found("customer", customer_id));
        }
        let current = store::lock_or_create(&mut tx, customer_id, &self.defaults).await?;
        let uninvoiced_minor = store::uninvoiced_total(&mut tx, customer_id).await?;
        match store::payment(&mut tx, customer_id, reference).await? {
            Some((amount, cur)) if amount == amount_minor && cur == currency => {
                return Ok(Answer::Fresh(FinanceView {
                    finance: current,
                    uninvoiced_minor,
                }));
            }
            Some(_) => {
                return Err(Error::AlreadyExists(format!(
                    "payment {reference} was recorded with another amount"
                )));
            }
            None => {}
        }
        if currency != current.currency {
            return Err(Error::precondition(format!(
                "the customer's account is in {}, not {currency}",
                current.currency
            )));
        }
        store::insert_payment(&mut tx, customer_id, reference, amount_minor, currency).await?;
        let next = Finance {
            open_balance_minor: current
                .open_balance_minor
                .checked_sub(amount_minor)
                .ok_or_else(|| Error::invalid("amount.amount_minor", "too large"))?,
            ..current
        };
        let finance = store::update(&mut tx, &next).await?;
        publish_changed(&mut tx, &finance).await?;
        let view = FinanceView {
            finance,
            uninvoiced_minor,
        };
        idempotency::remember(&mut tx, once, &view).await?;
        tx.commit().await?;
        Ok(Answer::Fresh(view))
    }
}

/// Enqueues `erp.customer.finance_changed` for `finance` (already at its new version).
pub async fn publish_changed(tx: &mut OutboxTx, finance: &Finance) -> Result<()> {
    Ok(tx
        .publish(SOURCE, finance.version, &finance.changed_event())
        .await?)
}

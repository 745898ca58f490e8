//! Stock levels and ledger movements.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Stock of one sku in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    pub sku: String,
    pub warehouse: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub update_time: DateTime<Utc>,
}

impl Level {
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

/// Why stock moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovementReason {
    Receipt,
    Adjustment(AdjustmentReason),
    TransferOut,
    TransferIn,
    Reservation,
    Release,
    Shipment,
}

impl MovementReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receipt => "RECEIPT",
            Self::Adjustment(_) => "ADJUSTMENT",
            Self::TransferOut => "TRANSFER_OUT",
            Self::TransferIn => "TRANSFER_IN",
            Self::Reservation => "RESERVATION",
            Self::Release => "RELEASE",
            Self::Shipment => "SHIPMENT",
        }
    }

    pub fn adjustment(self) -> Option<AdjustmentReason> {
        match self {
            Self::Adjustment(reason) => Some(reason),
            _ => None,
        }
    }

    pub fn parse(reason: &str, adjustment: Option<&str>) -> Option<Self> {
        Some(match reason {
            "RECEIPT" => Self::Receipt,
            "ADJUSTMENT" => Self::Adjustment(AdjustmentReason::parse(adjustment?)?),
            "TRANSFER_OUT" => Self::TransferOut,
            "TRANSFER_IN" => Self::TransferIn,
            "RESERVATION" => Self::Reservation,
            "RELEASE" => Self::Release,
            "SHIPMENT" => Self::Shipment,
            _ => return None,
        })
    }
}

/// The reason code of a manual adjustment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustmentReason {
    CountCorrection,
    Damaged,
    Lost,
    Found,
    Expired,
    Other,
    /// A full count (`ErpSync.CountStock`) set on hand to the counted quantity.
    Count,
}

impl AdjustmentReason {
    pub const ALL: [Self; 7] = [
        Self::CountCorrection,
        Self::Damaged,
        Self::Lost,
        Self::Found,
        Self::Expired,
        Self::Other,
        Self::Count,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CountCorrection => "COUNT_CORRECTION",
            Self::Damaged => "DAMAGED",
            Self::Lost => "LOST",
            Self::Found => "FOUND",
            Self::Expired => "EXPIRED",
            Self::Other => "OTHER",
            Self::Count => "COUNT",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// A movement to write: the level changes by the deltas and the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMovement {
    pub sku: String,
    pub warehouse: String,
    pub on_hand_delta: i64,
    pub reserved_delta: i64,
    pub reason: MovementReason,
    pub reference: Option<String>,
    pub order_id: Option<Uuid>,
}

/// One ledger entry, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub id: i64,
    pub sku: String,
    pub warehouse: String,
    pub on_hand_delta: i64,
    pub reserved_delta: i64,
    pub reason: MovementReason,
    pub reference: Option<String>,
    pub order_id: Option<Uuid>,
    pub create_time: DateTime<Utc>,
}

/// A warehouse count from an integrator (`ErpSync.CountStock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    pub sku: String,
    pub warehouse: String,
    pub counted_quantity: i64,
    /// The idempotency key; also the ledger entry's reference.
    pub event_id: String,
    /// The integrator, e.g. "wms".
    pub source: String,
}

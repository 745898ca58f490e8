//! Stock levels, movements and adjustment reasons: domain values to messages and back.

use tandem_common::grpc::timestamp;
use tandem_proto::erp::v1 as pb;

use crate::stock::{AdjustmentReason, Level, Movement, MovementReason};

pub(in crate::grpc) fn level(level: &Level) -> pb::StockLevel {
    pb::StockLevel {
        sku: level.sku.clone(),
        warehouse: level.warehouse.clone(),
        on_hand: level.on_hand,
        reserved: level.reserved,
        available: level.available(),
        update_time: Some(timestamp(level.update_time)),
    }
}

pub(in crate::grpc) fn adjustment_reason(reason: pb::AdjustmentReason) -> Option<AdjustmentReason> {
    use pb::AdjustmentReason as P;
    Some(match reason {
        P::Unspecified => return None,
        P::CountCorrection => AdjustmentReason::CountCorrection,
        P::Damaged => AdjustmentReason::Damaged,
        P::Lost => AdjustmentReason::Lost,
        P::Found => AdjustmentReason::Found,
        P::Expired => AdjustmentReason::Expired,
        P::Other => AdjustmentReason::Other,
        P::Count => AdjustmentReason::Count,
    })
}

fn adjustment_reason_pb(reason: AdjustmentReason) -> pb::AdjustmentReason {
    use pb::AdjustmentReason as P;
    match reason {
        AdjustmentReason::CountCorrection => P::CountCorrection,
        AdjustmentReason::Damaged => P::Damaged,
        AdjustmentReason::Lost => P::Lost,
        AdjustmentReason::Found => P::Found,
        AdjustmentReason::Expired => P::Expired,
        AdjustmentReason::Other => P::Other,
        AdjustmentReason::Count => P::Count,
    }
}

pub(in crate::grpc) fn movement(movement: &Movement) -> pb::StockMovement {
    use pb::MovementReason as P;
    let reason = match movement.reason {
        MovementReason::Receipt => P::Receipt,
        MovementReason::Adjustment(_) => P::Adjustment,
        MovementReason::TransferOut => P::TransferOut,
        MovementReason::TransferIn => P::TransferIn,
        MovementReason::Reservation => P::Reservation,
        MovementReason::Release => P::Release,
        MovementReason::Shipment => P::Shipment,
    };
    pb::StockMovement {
        id: movement.id,
        sku: movement.sku.clone(),
        warehouse: movement.warehouse.clone(),
        on_hand_delta: movement.on_hand_delta,
        reserved_delta: movement.reserved_delta,
        reason: reason as i32,
        adjustment_reason: movement
            .reason
            .adjustment()
            .map_or(pb::AdjustmentReason::Unspecified, adjustment_reason_pb)
            as i32,
        reference: movement.reference.clone().unwrap_or_default(),
        order_id: movement
            .order_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        create_time: Some(timestamp(movement.create_time)),
    }
}

-- What the sync bridge and the operator CLI need: mirrored customer addresses, warehouse
-- counts from a WMS (idempotent by event id) and the COUNT adjustment reason.

-- The CRM customer's addresses, as mirrored: a JSON array of
-- {kind, line1, line2, city, postal_code, region, country_code}, replaced as a whole by every
-- applied profile version.
ALTER TABLE customers ADD COLUMN addresses JSONB NOT NULL DEFAULT '[]'::jsonb
    CHECK (jsonb_typeof(addresses) = 'array');

-- COUNT: a full count (ErpSync.CountStock) set on hand to the counted quantity.
ALTER TABLE stock_ledger DROP CONSTRAINT stock_ledger_adjustment_reason_check;
ALTER TABLE stock_ledger ADD CONSTRAINT stock_ledger_adjustment_reason_check
    CHECK (adjustment_reason IN ('COUNT_CORRECTION', 'DAMAGED', 'LOST', 'FOUND', 'EXPIRED',
                                 'OTHER', 'COUNT'));

-- Every count applied, once per event id (the idempotency key of CountStock). Written in the
-- transaction that applies the count, after the sku and level locks.
CREATE TABLE stock_counts (
    event_id         TEXT PRIMARY KEY CHECK (char_length(event_id) BETWEEN 1 AND 200),
    sku              TEXT NOT NULL,
    warehouse        TEXT NOT NULL,
    counted_quantity BIGINT NOT NULL CHECK (counted_quantity >= 0),
    -- on hand before the count; counted_quantity - previous_on_hand is the ledger delta.
    previous_on_hand BIGINT NOT NULL,
    source           TEXT NOT NULL DEFAULT '',
    create_time      TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (sku, warehouse) REFERENCES stock_levels (sku, warehouse)
);

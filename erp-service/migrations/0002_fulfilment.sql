-- Products, warehouses, stock (levels + immutable ledger), customer finance, sales orders,
-- reservations and invoices. The ERP is the system of record for all of them.
--
-- Lock order, followed by every transaction that takes more than one of these locks (so
-- concurrent transactions never deadlock): product rows (one per sku, the "sku lock", sorted
-- by sku) -> stock_levels rows (sorted by sku, warehouse) -> sales_orders rows ->
-- customer_finance rows.

CREATE TABLE products (
    id               UUID PRIMARY KEY,
    sku              TEXT NOT NULL UNIQUE CHECK (sku ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    display_name     TEXT NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 200),
    description      TEXT NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
    unit_price_minor BIGINT NOT NULL CHECK (unit_price_minor >= 0),
    currency         TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    active           BOOLEAN NOT NULL DEFAULT true,
    -- aggregate_version of erp.product.upserted.
    version          BIGINT NOT NULL CHECK (version > 0),
    -- aggregate_version of erp.stock.changed for this sku; 0 until its stock first changes.
    stock_version    BIGINT NOT NULL DEFAULT 0 CHECK (stock_version >= 0),
    create_time      TIMESTAMPTZ NOT NULL DEFAULT now(),
    update_time      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE warehouses (
    code         TEXT PRIMARY KEY CHECK (code ~ '^[A-Z0-9][A-Z0-9_-]{0,31}$'),
    display_name TEXT NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 200),
    create_time  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Current stock per sku per warehouse. Written only together with a stock_ledger row.
CREATE TABLE stock_levels (
    sku         TEXT NOT NULL REFERENCES products (sku),
    warehouse   TEXT NOT NULL REFERENCES warehouses (code),
    on_hand     BIGINT NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
    reserved    BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    update_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, warehouse),
    -- available = on_hand - reserved never goes below zero.
    CONSTRAINT stock_levels_reserved_within_on_hand CHECK (reserved <= on_hand)
);

-- Every movement, immutable. Per (sku, warehouse): on_hand = sum(on_hand_delta) and
-- reserved = sum(reserved_delta).
CREATE TABLE stock_ledger (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku            TEXT NOT NULL,
    warehouse      TEXT NOT NULL,
    on_hand_delta  BIGINT NOT NULL,
    reserved_delta BIGINT NOT NULL,
    reason         TEXT NOT NULL CHECK (reason IN ('RECEIPT', 'ADJUSTMENT', 'TRANSFER_OUT',
                                                   'TRANSFER_IN', 'RESERVATION', 'RELEASE',
                                                   'SHIPMENT')),
    adjustment_reason TEXT CHECK (adjustment_reason IN ('COUNT_CORRECTION', 'DAMAGED', 'LOST',
                                                        'FOUND', 'EXPIRED', 'OTHER')),
    reference      TEXT,
    order_id       UUID,
    create_time    TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (sku, warehouse) REFERENCES stock_levels (sku, warehouse),
    CHECK (on_hand_delta <> 0 OR reserved_delta <> 0),
    CHECK ((reason = 'ADJUSTMENT') = (adjustment_reason IS NOT NULL))
);
CREATE INDEX stock_ledger_by_level ON stock_ledger (sku, warehouse, id);
CREATE INDEX stock_ledger_by_order ON stock_ledger (order_id, id) WHERE order_id IS NOT NULL;

CREATE FUNCTION stock_ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'stock_ledger is append-only (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER stock_ledger_no_update_or_delete BEFORE UPDATE OR DELETE ON stock_ledger
    FOR EACH ROW EXECUTE FUNCTION stock_ledger_is_append_only();
CREATE TRIGGER stock_ledger_no_truncate BEFORE TRUNCATE ON stock_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION stock_ledger_is_append_only();

-- Finance the ERP owns for a mirrored customer. A customer without a row has the configured
-- defaults; the row is created on first use.
CREATE TABLE customer_finance (
    customer_id        UUID PRIMARY KEY REFERENCES customers (id),
    credit_limit_minor BIGINT NOT NULL CHECK (credit_limit_minor >= 0),
    currency           TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    payment_terms_days INTEGER NOT NULL CHECK (payment_terms_days BETWEEN 0 AND 365),
    -- Invoiced minus paid; negative is a credit.
    open_balance_minor BIGINT NOT NULL DEFAULT 0,
    credit_hold        BOOLEAN NOT NULL DEFAULT false,
    -- aggregate_version of erp.customer.finance_changed; 0 until the first change.
    version            BIGINT NOT NULL DEFAULT 0 CHECK (version >= 0),
    update_time        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE payments (
    id           UUID PRIMARY KEY,
    customer_id  UUID NOT NULL REFERENCES customers (id),
    reference    TEXT NOT NULL CHECK (char_length(reference) BETWEEN 1 AND 200),
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency     TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    create_time  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (customer_id, reference)
);

CREATE SEQUENCE invoice_numbers;

-- Sales orders accepted from the CRM, once per CRM order id. customer_id and the line skus
-- carry no foreign keys: a REJECTED order records what the CRM sent, known or not.
CREATE TABLE sales_orders (
    id                   UUID PRIMARY KEY,
    crm_order_id         TEXT NOT NULL UNIQUE CHECK (char_length(crm_order_id) BETWEEN 1 AND 128),
    customer_id          UUID NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('RESERVED', 'BACKORDERED', 'CREDIT_HOLD',
                                                         'REJECTED', 'SHIPPED', 'INVOICED',
                                                         'CANCELLED')),
    reason               TEXT,
    currency             TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    total_minor          BIGINT NOT NULL CHECK (total_minor >= 0),
    -- aggregate_version of erp.order.status_changed.
    version              BIGINT NOT NULL CHECK (version > 0),
    invoice_number       TEXT UNIQUE,
    invoice_amount_minor BIGINT,
    invoice_issue_date   DATE,
    invoice_due_date     DATE,
    create_time          TIMESTAMPTZ NOT NULL DEFAULT now(),
    update_time          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((status = 'INVOICED') = (invoice_number IS NOT NULL)),
    CHECK ((invoice_number IS NULL) = (invoice_amount_minor IS NULL)
       AND (invoice_number IS NULL) = (invoice_issue_date IS NULL)
       AND (invoice_number IS NULL) = (invoice_due_date IS NULL))
);
CREATE INDEX sales_orders_backordered ON sales_orders (create_time, id) WHERE status = 'BACKORDERED';
CREATE INDEX sales_orders_by_customer ON sales_orders (customer_id, status);

CREATE TABLE sales_order_lines (
    order_id         UUID NOT NULL REFERENCES sales_orders (id),
    line_number      INTEGER NOT NULL CHECK (line_number > 0),
    sku              TEXT NOT NULL,
    quantity         BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT NOT NULL CHECK (unit_price_minor >= 0),
    -- Set once, when the line's stock is reserved: a line is reserved at most once.
    reserved         BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (order_id, line_number)
);
CREATE INDEX sales_order_lines_by_sku ON sales_order_lines (sku);

-- Where each reserved line's stock is held. HELD counts in stock_levels.reserved; RELEASED
-- (cancelled) and SHIPPED no longer do.
CREATE TABLE reservations (
    order_id    UUID NOT NULL,
    line_number INTEGER NOT NULL,
    sku         TEXT NOT NULL,
    warehouse   TEXT NOT NULL,
    quantity    BIGINT NOT NULL CHECK (quantity > 0),
    state       TEXT NOT NULL CHECK (state IN ('HELD', 'RELEASED', 'SHIPPED')),
    PRIMARY KEY (order_id, line_number, warehouse),
    FOREIGN KEY (order_id, line_number) REFERENCES sales_order_lines (order_id, line_number),
    FOREIGN KEY (sku, warehouse) REFERENCES stock_levels (sku, warehouse)
);
CREATE INDEX reservations_held ON reservations (sku, warehouse) WHERE state = 'HELD';

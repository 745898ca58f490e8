-- Contacts and addresses: part of the customer profile the CRM owns. Each change replaces the
-- customer's whole list, so rows are identified by their position.
CREATE TABLE customer_contacts (
    customer_id UUID NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL CHECK (position >= 0),
    name        TEXT NOT NULL,
    email       TEXT,
    phone       TEXT,
    role        TEXT,
    PRIMARY KEY (customer_id, position)
);

CREATE TABLE customer_addresses (
    customer_id  UUID NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL CHECK (position >= 0),
    kind         TEXT NOT NULL CHECK (kind IN ('BILLING', 'SHIPPING')),
    line1        TEXT NOT NULL,
    line2        TEXT,
    city         TEXT NOT NULL,
    postal_code  TEXT,
    region       TEXT,
    country_code TEXT NOT NULL CHECK (country_code ~ '^[A-Z]{2}$'),
    PRIMARY KEY (customer_id, position)
);
-- At most one billing address per customer.
CREATE UNIQUE INDEX customer_addresses_one_billing ON customer_addresses (customer_id)
    WHERE kind = 'BILLING';

-- Listing filters.
CREATE INDEX customers_status ON customers (status, id);
CREATE INDEX customers_email ON customers (lower(email));

-- Mirror of the ERP's finance view of a customer (read-only here; written by CrmSync).
CREATE TABLE customer_finance (
    customer_id          UUID PRIMARY KEY REFERENCES customers (id) ON DELETE CASCADE,
    currency             TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    credit_limit_minor   BIGINT NOT NULL CHECK (credit_limit_minor >= 0),
    open_balance_minor   BIGINT NOT NULL,
    payment_terms        TEXT,
    credit_hold          BOOLEAN NOT NULL,
    source_version       BIGINT NOT NULL CHECK (source_version > 0),
    update_time          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Mirror of the ERP's catalogue and stock (read-only here; written by CrmSync). A row created
-- by a stock level before its product arrived has product_version 0 and cannot be ordered.
CREATE TABLE catalogue (
    sku              TEXT PRIMARY KEY,
    name             TEXT NOT NULL DEFAULT '',
    unit_price_minor BIGINT NOT NULL DEFAULT 0 CHECK (unit_price_minor >= 0),
    currency         TEXT NOT NULL DEFAULT '',
    active           BOOLEAN NOT NULL DEFAULT false,
    product_version  BIGINT NOT NULL DEFAULT 0 CHECK (product_version >= 0),
    available        BIGINT NOT NULL DEFAULT 0 CHECK (available >= 0),
    stock_version    BIGINT NOT NULL DEFAULT 0 CHECK (stock_version >= 0),
    update_time      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Sales orders: the CRM owns customer, lines and quoted prices; the fulfilment_* columns mirror
-- the ERP. `version` counts CRM changes and is the aggregate_version of order events.
CREATE TABLE orders (
    id                      UUID PRIMARY KEY,
    customer_id             UUID NOT NULL REFERENCES customers (id),
    status                  TEXT NOT NULL
                            CHECK (status IN ('DRAFT', 'SUBMITTED', 'CANCEL_REQUESTED', 'CANCELLED')),
    currency                TEXT CHECK (currency ~ '^[A-Z]{3}$'),
    cancellation_reason     TEXT,
    version                 BIGINT NOT NULL CHECK (version > 0),
    create_time             TIMESTAMPTZ NOT NULL DEFAULT now(),
    update_time             TIMESTAMPTZ NOT NULL DEFAULT now(),
    submit_time             TIMESTAMPTZ,
    fulfilment_status       TEXT CHECK (fulfilment_status IN ('RESERVED', 'BACKORDERED',
                            'CREDIT_HOLD', 'REJECTED', 'SHIPPED', 'INVOICED', 'CANCELLED')),
    rejection_reason        TEXT,
    invoice_number          TEXT,
    invoice_amount_minor    BIGINT,
    fulfilment_version      BIGINT NOT NULL DEFAULT 0 CHECK (fulfilment_version >= 0),
    fulfilment_update_time  TIMESTAMPTZ
);
CREATE INDEX orders_customer ON orders (customer_id, id);
CREATE INDEX orders_status ON orders (status, id);

CREATE TABLE order_lines (
    order_id         UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_number      INTEGER NOT NULL CHECK (line_number > 0),
    sku              TEXT NOT NULL,
    product_name     TEXT NOT NULL,
    quantity         BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT NOT NULL CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, line_number),
    UNIQUE (order_id, sku)
);

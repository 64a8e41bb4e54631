-- The seed-004 domain projections: users, their orders, the orders'
-- payments, stock per SKU. Real keys: an order needs its user, a payment its
-- order, so an event that refers to something unknown is refused by the
-- database (and dead-lettered with its error).

CREATE TABLE users (
    id              TEXT COLLATE "C" PRIMARY KEY,
    name            TEXT        NOT NULL,
    email           TEXT        NOT NULL,
    created_at      TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL,
    last_message_id UUID        NOT NULL
);

CREATE TABLE orders (
    id              TEXT COLLATE "C" PRIMARY KEY,
    user_id         TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    amount          NUMERIC(24,8) NOT NULL CHECK (amount >= 0),
    currency        TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    items           JSONB       NOT NULL DEFAULT '[]',
    placed_at       TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    last_message_id UUID        NOT NULL
);
CREATE INDEX orders_by_user ON orders (user_id, placed_at DESC);

CREATE TABLE payments (
    order_id        TEXT COLLATE "C" PRIMARY KEY REFERENCES orders (id),
    payment_id      TEXT,
    amount          NUMERIC(24,8) NOT NULL CHECK (amount >= 0),
    status          TEXT        NOT NULL,
    settled_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    last_message_id UUID        NOT NULL
);

CREATE TABLE inventory (
    sku             TEXT COLLATE "C" PRIMARY KEY,
    quantity        BIGINT      NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    last_message_id UUID        NOT NULL
);

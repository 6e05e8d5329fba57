-- Quotas: named limit definitions, leased counters, idempotency claims and usage roll-ups.
-- Plans are referenced by name only (text), so this migration depends on nothing but 001.

CREATE TABLE quota_limits (
  limit_id     bigserial PRIMARY KEY,
  name         text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
  -- What the limit is attached to: a plan (by name), a key, a tenant, or an owner (identity).
  scope        text NOT NULL CHECK (scope IN ('plan', 'key', 'tenant', 'owner')),
  scope_id     text NOT NULL,
  -- Whose calls share one counter: each key, its tenant, or its owner (falls back to the key).
  per          text NOT NULL CHECK (per IN ('key', 'tenant', 'owner')),
  kind         text NOT NULL CHECK (kind IN ('rate', 'quota', 'budget')),
  -- rate: bucket capacity (burst); quota: calls (cost units) per window; budget: credits per refill.
  amount       bigint NOT NULL CHECK (amount > 0),
  -- rate: tokens added per `period`; quota: unused.
  refill       bigint NOT NULL DEFAULT 0 CHECK (refill >= 0),
  -- rate: the refill period; quota: the calendar window; budget: the refill period ('none' = never).
  period       text NOT NULL CHECK (period IN ('second', 'minute', 'hour', 'day', 'month', 'none')),
  -- budget only: 'set' (balance becomes amount; unused credits lapse), 'add' (amount is added; rolls over up to cap).
  refill_mode  text NOT NULL DEFAULT 'set' CHECK (refill_mode IN ('set', 'add')),
  cap          bigint,
  shadow       boolean NOT NULL DEFAULT false,
  -- Charged when a ConsumeQuota call names no limits.
  auto_apply   boolean NOT NULL DEFAULT false,
  created_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (scope, scope_id, name),
  CHECK (kind <> 'rate' OR (refill > 0 AND period <> 'none')),
  CHECK (kind <> 'quota' OR period <> 'none')
);

-- Windowed quotas and budgets: one row per (limit, subject, window). `used` counts tokens leased
-- to replicas (admitted or still held), never more than `capacity`. Hot path: primary key.
CREATE TABLE quota_counters (
  limit_id     bigint NOT NULL REFERENCES quota_limits (limit_id) ON DELETE CASCADE,
  subject      text NOT NULL,
  window_index bigint NOT NULL,
  capacity     bigint NOT NULL,
  used         bigint NOT NULL CHECK (used >= 0 AND used <= capacity),
  last_grant   bigint NOT NULL DEFAULT 0,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (limit_id, subject, window_index)
);

-- Token buckets: one row per (limit, subject); tokens as of `refreshed_ms` (replica clock, ms).
CREATE TABLE quota_buckets (
  limit_id     bigint NOT NULL REFERENCES quota_limits (limit_id) ON DELETE CASCADE,
  subject      text NOT NULL,
  tokens       double precision NOT NULL CHECK (tokens >= 0),
  refreshed_ms bigint NOT NULL,
  last_grant   bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (limit_id, subject)
);

-- A charged call with an idempotency key: its answer, replayed to every retry on any replica.
CREATE TABLE quota_idempotency (
  key_id          text NOT NULL,
  idempotency_key text NOT NULL,
  response        jsonb NOT NULL,
  expires_at      timestamptz NOT NULL,
  PRIMARY KEY (key_id, idempotency_key)
);
CREATE INDEX quota_idempotency_expiry ON quota_idempotency (expires_at);

-- Usage roll-ups, written in batches (one statement per flush, never one per call).
CREATE TABLE quota_usage (
  granularity  text NOT NULL CHECK (granularity IN ('minute', 'hour', 'day')),
  bucket_start timestamptz NOT NULL,
  tenant_id    text NOT NULL,
  key_id       text NOT NULL,
  limit_name   text NOT NULL,
  admitted     bigint NOT NULL DEFAULT 0,
  denied       bigint NOT NULL DEFAULT 0,
  cost         bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (granularity, bucket_start, tenant_id, key_id, limit_name)
);
CREATE INDEX quota_usage_tenant ON quota_usage (granularity, tenant_id, bucket_start);

-- Every change to a limit definition tells every replica to reload its definitions.
CREATE FUNCTION notify_limit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('tollgate_invalidate', 'limits:changed');
  RETURN NULL;
END $$;
CREATE TRIGGER quota_limits_notify AFTER INSERT OR UPDATE OR DELETE ON quota_limits
  FOR EACH STATEMENT EXECUTE FUNCTION notify_limit_change();

-- Shipped plans, mirroring common API tiers. `requests` applies to every call that names no limit.
INSERT INTO quota_limits (name, scope, scope_id, per, kind, amount, refill, period, refill_mode, auto_apply) VALUES
  ('requests', 'plan', 'free',       'key', 'quota',  10,      0,       'minute', 'set', true),
  ('chat',     'plan', 'free',       'key', 'rate',   10,      10,      'minute', 'set', false),
  ('scouts',   'plan', 'free',       'key', 'rate',   30,      30,      'minute', 'set', false),
  ('system',   'plan', 'free',       'key', 'rate',   100,     100,     'minute', 'set', false),
  ('tokens',   'plan', 'free',       'key', 'quota',  5000,    0,       'hour',   'set', false),
  ('credits',  'plan', 'free',       'tenant', 'budget', 1000, 0,       'month',  'set', false),
  ('requests', 'plan', 'pro',        'key', 'quota',  100,     0,       'minute', 'set', true),
  ('chat',     'plan', 'pro',        'key', 'rate',   100,     100,     'minute', 'set', false),
  ('scouts',   'plan', 'pro',        'key', 'rate',   300,     300,     'minute', 'set', false),
  ('system',   'plan', 'pro',        'key', 'rate',   1000,    1000,    'minute', 'set', false),
  ('tokens',   'plan', 'pro',        'key', 'quota',  50000,   0,       'hour',   'set', false),
  ('credits',  'plan', 'pro',        'tenant', 'budget', 100000, 0,     'month',  'add', false),
  ('requests', 'plan', 'enterprise', 'key', 'quota',  1000,    0,       'minute', 'set', true),
  ('chat',     'plan', 'enterprise', 'key', 'rate',   1000,    1000,    'minute', 'set', false),
  ('scouts',   'plan', 'enterprise', 'key', 'rate',   3000,    3000,    'minute', 'set', false),
  ('system',   'plan', 'enterprise', 'key', 'rate',   10000,   10000,   'minute', 'set', false),
  ('tokens',   'plan', 'enterprise', 'key', 'quota',  500000,  0,       'hour',   'set', false),
  ('credits',  'plan', 'enterprise', 'tenant', 'budget', 10000000, 0,   'month',  'add', false);

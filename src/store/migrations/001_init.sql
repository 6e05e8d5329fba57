-- Tenants, API keys (argon2id hashes only) and the append-only audit log.

CREATE TABLE tenants (
  tenant_id    text PRIMARY KEY,
  display_name text NOT NULL DEFAULT '',
  created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
  key_id             text PRIMARY KEY,
  tenant_id          text NOT NULL REFERENCES tenants (tenant_id),
  name               text NOT NULL DEFAULT '',
  environment        text NOT NULL CHECK (environment IN ('live', 'test')),
  prefix             text NOT NULL,
  -- argon2id PHC string; the secret itself is never stored.
  secret_hash        text NOT NULL,
  hint               text NOT NULL,
  permissions        text[] NOT NULL DEFAULT '{}',
  roles              text[] NOT NULL DEFAULT '{}',
  plan               text NOT NULL DEFAULT 'free',
  metadata           jsonb NOT NULL DEFAULT '{}',
  expires_at         timestamptz,
  ip_allowlist       text[] NOT NULL DEFAULT '{}',
  owner_id           text,
  revoked_at         timestamptz,
  revoked_reason     text,
  predecessor_key_id text REFERENCES api_keys (key_id),
  successor_key_id   text REFERENCES api_keys (key_id),
  grace_expires_at   timestamptz,
  -- Millisecond precision, so that page cursors (JS dates) compare exactly.
  created_at         timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
  updated_at         timestamptz NOT NULL DEFAULT now()
);

-- ListKeys pages by (created_at, key_id) descending inside a tenant.
CREATE INDEX api_keys_tenant_page ON api_keys (tenant_id, created_at DESC, key_id DESC);

CREATE TABLE audit_log (
  audit_id    bigserial PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  actor       text NOT NULL,
  action      text NOT NULL,
  target_type text NOT NULL,
  target_id   text NOT NULL,
  tenant_id   text,
  details     jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_target ON audit_log (target_type, target_id, at);

-- The audit log is append-only: no role may rewrite history through normal statements.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- Every change to a key tells every replica to drop what it cached for it, whoever made the
-- change (the service, the CLI, or an operator with psql).
CREATE FUNCTION notify_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('tollgate_invalidate', 'key:' || COALESCE(NEW.key_id, OLD.key_id));
  RETURN NULL;
END $$;
CREATE TRIGGER api_keys_notify AFTER UPDATE OR DELETE ON api_keys
  FOR EACH ROW EXECUTE FUNCTION notify_key_change();

-- Authorization policy: operator-defined plans, per-tenant roles, and per-key plan overrides.

-- A plan is a bundle of grants, denies and caps. Rate limits and quotas attach to plans by name
-- in the quota tables, so this row stays limit-agnostic.
CREATE TABLE plans (
  plan_name         text PRIMARY KEY,
  display_name      text NOT NULL DEFAULT '',
  -- Permission patterns the plan grants and denies (a deny beats every grant).
  allowed           text[] NOT NULL DEFAULT '{}',
  blocked           text[] NOT NULL DEFAULT '{}',
  -- NULL = no cap / the gateway's default timeout.
  max_cost_per_call bigint CHECK (max_cost_per_call >= 0),
  timeout_ms        integer CHECK (timeout_ms > 0),
  ip_allowlist      text[] NOT NULL DEFAULT '{}',
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

INSERT INTO plans (plan_name, display_name, allowed, blocked, max_cost_per_call, timeout_ms) VALUES
  ('free', 'Free',
    '{read,chat:write,tool:Read,tool:Grep}',
    '{tool:Bash,tool:Edit,tool:Write,agent:*,webhook}', 10, 10000),
  ('pro', 'Pro',
    '{read,write,chat:*,files:*,tool:Read,tool:Grep,tool:Edit,tool:Write,agent:*}',
    '{tool:Bash}', 100, 60000),
  ('enterprise', 'Enterprise',
    '{read,write,webhook,chat:*,files:*,prompt-engineering:*,tool:*,agent:*}',
    '{}', 1000, 300000);

-- A role is a named permission set inside one tenant; keys name roles in api_keys.roles.
CREATE TABLE roles (
  tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
  role_name   text NOT NULL,
  description text NOT NULL DEFAULT '',
  permissions text[] NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, role_name)
);

-- Plan fields a key replaces for itself, as {"allowed": [...], "maxCostPerCall": 5, ...}.
ALTER TABLE api_keys ADD COLUMN policy_overrides jsonb NOT NULL DEFAULT '{}'
  CHECK (jsonb_typeof(policy_overrides) = 'object');

-- DeletePlan refuses to drop a plan that keys still use.
CREATE INDEX api_keys_plan ON api_keys (plan);

-- Every change to a plan or to a tenant's roles reaches every replica's policy cache within a
-- notification's round trip. Inserts notify too: a replica may have cached "no such plan".
CREATE FUNCTION notify_plan_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('tollgate_invalidate', 'plan:' || COALESCE(NEW.plan_name, OLD.plan_name));
  RETURN NULL;
END $$;
CREATE TRIGGER plans_notify AFTER INSERT OR UPDATE OR DELETE ON plans
  FOR EACH ROW EXECUTE FUNCTION notify_plan_change();

CREATE FUNCTION notify_role_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('tollgate_invalidate', 'roles:' || COALESCE(NEW.tenant_id, OLD.tenant_id));
  RETURN NULL;
END $$;
CREATE TRIGGER roles_notify AFTER INSERT OR UPDATE OR DELETE ON roles
  FOR EACH ROW EXECUTE FUNCTION notify_role_change();

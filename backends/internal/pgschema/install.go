package pgschema

import (
	"errors"
	"fmt"
	"strings"
)

// ErrPartialInstall is returned by an install that finds some but not all of
// the objects: it refuses to touch them (see Installation.Check).
var ErrPartialInstall = errors.New("jobwatch: queue schema is partially installed")

// Installation is what StateSQL found: which objects exist.
type Installation struct {
	SchemaExists bool // true when Names.Schema is empty
	StatusType   bool
	Queue        bool
	Log          bool
	Statistics   bool
	Schedules    bool
	Function     bool
	Trigger      bool
}

// ScanDest returns the destinations, in StateSQL's column order, for a row
// scanner (pgx.Row.Scan and sql.Row.Scan alike).
func (s *Installation) ScanDest() []any {
	return []any{&s.SchemaExists, &s.StatusType, &s.Queue, &s.Log, &s.Statistics,
		&s.Schedules, &s.Function, &s.Trigger}
}

func (s Installation) parts() []struct {
	name string
	ok   bool
} {
	return []struct {
		name string
		ok   bool
	}{
		{"status type", s.StatusType}, {"queue table", s.Queue}, {"log table", s.Log},
		{"statistics table", s.Statistics}, {"schedules table", s.Schedules},
		{"trigger function", s.Function}, {"trigger", s.Trigger},
	}
}

// Complete reports whether every object exists.
func (s Installation) Complete() bool {
	for _, p := range s.parts() {
		if !p.ok {
			return false
		}
	}
	return true
}

// Empty reports whether no object exists (the schema itself may).
func (s Installation) Empty() bool {
	for _, p := range s.parts() {
		if p.ok {
			return false
		}
	}
	return true
}

// Check returns nil for a complete or empty installation and an error
// matching ErrPartialInstall naming what is missing otherwise.
func (s Installation) Check() error {
	if s.Complete() || s.Empty() {
		return nil
	}
	var missing []string
	for _, p := range s.parts() {
		if !p.ok {
			missing = append(missing, p.name)
		}
	}
	return fmt.Errorf("%w: missing %s (left untouched; upgrade it with PgQueuer's `pgq upgrade`, or uninstall it)",
		ErrPartialInstall, strings.Join(missing, ", "))
}

// LockSQL takes a transaction-scoped advisory lock keyed by this
// installation's queue table, so that concurrent installers and uninstallers
// of the same installation run one after the other. Run it first in the
// install (or uninstall) transaction. No params.
func (n Names) LockSQL() string {
	return "SELECT pg_advisory_xact_lock(hashtextextended(" +
		QuoteLiteral("jobwatch install "+n.qQueue()) + ", 0))"
}

// StateSQL reads which objects exist: one row, the columns of
// Installation.ScanDest. Unqualified names resolve through search_path, as
// they do in every other statement. No params.
func (n Names) StateSQL() string {
	schemaExists := "true"
	if n.Schema != "" {
		schemaExists = "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = " + QuoteLiteral(n.Schema) + ")"
	}
	reg := func(fn, name string) string {
		return "pg_catalog." + fn + "(" + QuoteLiteral(name) + ") IS NOT NULL"
	}
	return "SELECT " + strings.Join([]string{
		schemaExists,
		reg("to_regtype", n.qType()),
		reg("to_regclass", n.qQueue()),
		reg("to_regclass", n.qLog()),
		reg("to_regclass", n.qStats()),
		reg("to_regclass", n.qSchedules()),
		reg("to_regprocedure", n.qFunction()+"()"),
		"EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass(" +
			QuoteLiteral(n.qQueue()) + ") AND tgname = " + QuoteLiteral(n.Trigger) + " AND NOT tgisinternal)",
	}, ",\n       ")
}

// CreateSchemaSQL creates the schema. Run it only when StateSQL found it
// missing (CREATE SCHEMA IF NOT EXISTS still needs the database's CREATE
// privilege). Empty when Names has no schema. No params.
func (n Names) CreateSchemaSQL() string {
	if n.Schema == "" {
		return ""
	}
	return "CREATE SCHEMA " + QuoteIdentifier(n.Schema)
}

// InstallSQL creates every object of design.md section 5, PgQueuer's
// layout: the status enum, the queue, log, statistics and schedules tables
// with their indexes, and the statement-level trigger that sends a
// table_changed_event on the channel after every insert, update, delete or
// truncate of the queue table. It fails if any object exists, so run it
// only when StateSQL found none, in the transaction that holds LockSQL.
// Several commands, no params.
func (n Names) InstallSQL() string {
	r := strings.NewReplacer(
		"{type}", n.qType(),
		"{queue}", n.qQueue(),
		"{log}", n.qLog(),
		"{stats}", n.qStats(),
		"{schedules}", n.qSchedules(),
		"{function}", n.qFunction(),
		"{trigger}", QuoteIdentifier(n.Trigger),
		"{channel}", QuoteLiteral(n.Channel),
		"{idx_dedupe}", QuoteIdentifier(n.IdxDedupe),
		"{idx_dequeue_priority}", QuoteIdentifier(n.IdxDequeuePriority),
		"{idx_dequeue_after}", QuoteIdentifier(n.IdxDequeueAfter),
		"{idx_log_job}", QuoteIdentifier(n.IdxLogJob),
		"{idx_log_created}", QuoteIdentifier(n.IdxLogCreated),
		"{idx_stats_unique}", QuoteIdentifier(n.IdxStatsUnique),
	)
	return r.Replace(installTemplate)
}

const installTemplate = `CREATE TYPE {type} AS ENUM ('queued', 'picked', 'successful', 'exception', 'canceled', 'deleted', 'failed');

CREATE TABLE {queue} (
    id               BIGSERIAL PRIMARY KEY,
    priority         INT NOT NULL,
    queue_manager_id UUID,
    created          TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated          TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    heartbeat        TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    execute_after    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    status           {type} NOT NULL,
    entrypoint       TEXT NOT NULL,
    dedupe_key       TEXT,
    payload          BYTEA,
    headers          JSONB,
    attempts         INT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX {idx_dedupe} ON {queue} (dedupe_key)
    WHERE status IN ('queued', 'picked') AND dedupe_key IS NOT NULL;
CREATE INDEX {idx_dequeue_priority} ON {queue} (entrypoint, priority DESC, id ASC)
    WHERE status = 'queued';
CREATE INDEX {idx_dequeue_after} ON {queue} (entrypoint, execute_after)
    WHERE status = 'queued';

CREATE TABLE {log} (
    id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    created    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    job_id     BIGINT NOT NULL,
    status     {type} NOT NULL,
    priority   INT NOT NULL,
    entrypoint TEXT NOT NULL,
    traceback  JSONB DEFAULT NULL,
    aggregated BOOLEAN DEFAULT FALSE
);
CREATE INDEX {idx_log_job} ON {log} (job_id, created DESC);
CREATE INDEX {idx_log_created} ON {log} (created);

CREATE TABLE {stats} (
    id         BIGSERIAL PRIMARY KEY,
    created    TIMESTAMPTZ NOT NULL DEFAULT DATE_TRUNC('sec', NOW() AT TIME ZONE 'UTC'),
    count      BIGINT NOT NULL,
    priority   INT NOT NULL,
    status     {type} NOT NULL,
    entrypoint TEXT NOT NULL
);
CREATE UNIQUE INDEX {idx_stats_unique} ON {stats} (
    priority,
    DATE_TRUNC('sec', created AT TIME ZONE 'UTC'),
    status,
    entrypoint
);

CREATE TABLE {schedules} (
    id         BIGSERIAL PRIMARY KEY,
    expression TEXT NOT NULL,
    entrypoint TEXT NOT NULL,
    heartbeat  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    created    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    next_run   TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    last_run   TIMESTAMPTZ,
    status     {type} DEFAULT 'queued',
    UNIQUE (expression, entrypoint)
);

CREATE FUNCTION {function}() RETURNS TRIGGER AS $$
BEGIN
    PERFORM pg_notify(
        {channel},
        json_build_object(
            'channel', {channel},
            'operation', lower(TG_OP),
            'sent_at', NOW(),
            'table', TG_TABLE_NAME,
            'type', 'table_changed_event'
        )::text
    );
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER {trigger}
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {queue}
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();
`

// UninstallSQL drops every object (those that exist), the enum with
// CASCADE. Run it in a transaction holding LockSQL. Several commands, no
// params.
func (n Names) UninstallSQL() string {
	return "DROP TABLE IF EXISTS " + strings.Join([]string{n.qQueue(), n.qLog(), n.qStats(), n.qSchedules()}, ", ") + ";\n" +
		"DROP FUNCTION IF EXISTS " + n.qFunction() + "();\n" +
		"DROP TYPE IF EXISTS " + n.qType() + " CASCADE;\n"
}

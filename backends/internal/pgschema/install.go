package pgschema

import (
	"errors"
	"fmt"
	"strings"
)

// ErrPartialInstall is returned by an install that finds some but not all of
// the objects: it refuses to touch them (see Installation.Check).
var ErrPartialInstall = errors.New("jobwatch: queue schema is partially installed")

// InstallResult is what an install did. The zero value means it found a
// complete installation with nothing to change.
type InstallResult struct {
	// Created is true when no object existed and the install created them
	// all (Changes is then empty).
	Created bool
	// Changes lists, in the order they were made, what the install changed
	// in an existing installation to bring it to PgQueuer's schema (an
	// earlier jobwatch installation: renamed and created indexes, the
	// replaced trigger function). Empty when nothing changed.
	Changes []string
}

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

// InstallSQL creates every object PgQueuer's installer creates (its default
// durability: every table logged), under the same names: the status enum,
// the queue, log, statistics and schedules tables with every index, the
// trigger function and the statement-level trigger on the queue table. The
// function sends a table_changed_event after every insert, delete or
// truncate of the queue table and nothing after an update, as PgQueuer's
// does. It fails if any object exists, so run it only when StateSQL found
// none, in the transaction that holds LockSQL. Several commands, no params.
func (n Names) InstallSQL() string {
	tables := strings.NewReplacer("{type}", n.qType(), "{queue}", n.qQueue(), "{log}", n.qLog(),
		"{stats}", n.qStats(), "{schedules}", n.qSchedules())
	var b strings.Builder
	b.WriteString(tables.Replace(typeSQL))
	for _, part := range []struct {
		table string
		on    string
	}{{queueTableSQL, n.qQueue()}, {logTableSQL, n.qLog()}, {statsTableSQL, n.qStats()}, {schedulesTableSQL, ""}} {
		b.WriteString("\n")
		b.WriteString(tables.Replace(part.table))
		for _, ix := range n.Indexes() {
			if ix.table == part.on {
				b.WriteString(ix.SQL + ";\n")
			}
		}
	}
	b.WriteString("\n" + n.functionSQL("CREATE FUNCTION") + "\n")
	b.WriteString("CREATE TRIGGER " + QuoteIdentifier(n.Trigger) + "\n" +
		"    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON " + n.qQueue() + "\n" +
		"    FOR EACH STATEMENT EXECUTE FUNCTION " + n.qFunction() + "();\n")
	return b.String()
}

const typeSQL = `CREATE TYPE {type} AS ENUM ('queued', 'picked', 'successful', 'exception', 'canceled', 'deleted', 'failed');
`

const queueTableSQL = `CREATE TABLE {queue} (
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
`

const logTableSQL = `CREATE TABLE {log} (
    id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    created    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    job_id     BIGINT NOT NULL,
    status     {type} NOT NULL,
    priority   INT NOT NULL,
    entrypoint TEXT NOT NULL,
    traceback  JSONB DEFAULT NULL,
    aggregated BOOLEAN DEFAULT FALSE
);
`

const statsTableSQL = `CREATE TABLE {stats} (
    id         BIGSERIAL PRIMARY KEY,
    created    TIMESTAMPTZ NOT NULL DEFAULT DATE_TRUNC('sec', NOW() AT TIME ZONE 'UTC'),
    count      BIGINT NOT NULL,
    priority   INT NOT NULL,
    status     {type} NOT NULL,
    entrypoint TEXT NOT NULL
);
`

const schedulesTableSQL = `CREATE TABLE {schedules} (
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
`

// Index is one index of an installation, as PgQueuer's installer defines it.
type Index struct {
	Name  string // unquoted
	SQL   string // the CREATE INDEX statement, without a semicolon
	table string // the quoted, qualified table it is on
}

// Indexes returns every index PgQueuer's installer creates besides the
// primary keys and the schedules table's unique constraint, in its order.
// The dequeue reads (priority, entrypoint and execute_after, stale picked
// jobs by updated) and the status reads (job_id, created DESC) each have
// theirs; PgQueuer's query plans rely on them all.
func (n Names) Indexes() []Index {
	idx := func(unique bool, name, table, def string) Index {
		create := "CREATE INDEX "
		if unique {
			create = "CREATE UNIQUE INDEX "
		}
		return Index{Name: name, SQL: create + QuoteIdentifier(name) + " ON " + table + " " + def, table: table}
	}
	q, l, s := n.qQueue(), n.qLog(), n.qStats()
	return []Index{
		idx(false, n.IdxPriorityID, q, "(priority ASC, id DESC) INCLUDE (id) WHERE status = 'queued'"),
		idx(false, n.IdxUpdatedID, q, "(updated ASC, id DESC) INCLUDE (id) WHERE status = 'picked'"),
		idx(false, n.IdxQueueManager, q, "(queue_manager_id) WHERE queue_manager_id IS NOT NULL"),
		idx(false, n.IdxDequeuePriority, q, "(entrypoint, priority DESC, id ASC) WHERE status = 'queued'"),
		idx(false, n.IdxDequeueAfter, q, "(entrypoint, execute_after) WHERE status = 'queued'"),
		idx(true, n.IdxDedupe, q, "(dedupe_key) WHERE status IN ('queued', 'picked') AND dedupe_key IS NOT NULL"),
		idx(false, n.IdxLogNotAggregated, l, "((1)) WHERE NOT aggregated"),
		idx(false, n.IdxLogCreated, l, "(created)"),
		idx(false, n.IdxLogStatus, l, "(status)"),
		idx(false, n.IdxLogJob, l, "(job_id, created DESC)"),
		idx(true, n.IdxStatsUnique, s, "(priority, DATE_TRUNC('sec', created AT TIME ZONE 'UTC'), status, entrypoint)"),
	}
}

// functionSQL defines the trigger function with create ("CREATE FUNCTION"
// or "CREATE OR REPLACE FUNCTION").
//
// The trigger is statement-level, where OLD and NEW are NULL: PgQueuer's
// function, which notifies on an UPDATE only when OLD IS DISTINCT FROM NEW,
// therefore never does, and neither does this one. Claims, heartbeats,
// holds, retries and requeues cause no NOTIFY traffic; jobwatch's own Hold
// sends its notification explicitly (see Transition).
func (n Names) functionSQL(create string) string {
	return create + " " + n.qFunction() + `() RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        PERFORM pg_notify(` + QuoteLiteral(n.Channel) + `, ` + n.changedEvent("lower(TG_OP)", "TG_TABLE_NAME") + `);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;`
}

// changedEvent is the SQL expression of a table_changed_event payload (text),
// PgQueuer's shape, with the given SQL expressions for the operation and
// the table name.
func (n Names) changedEvent(operation, table string) string {
	return "json_build_object('channel', " + QuoteLiteral(n.Channel) + ", 'operation', " + operation +
		", 'sent_at', NOW(), 'table', " + table + ", 'type', 'table_changed_event')::text"
}

// legacyFunctionBody is the body (prosrc) of the trigger function that
// jobwatch installed before it matched PgQueuer's: it notified on every
// UPDATE too. {channel} is the quoted channel literal.
const legacyFunctionBody = `
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
`

// isLegacyFunction reports whether src, a function body, is the earlier
// jobwatch function's (whitespace aside).
func (n Names) isLegacyFunction(src string) bool {
	legacy := strings.ReplaceAll(legacyFunctionBody, "{channel}", QuoteLiteral(n.Channel))
	return strings.Join(strings.Fields(src), " ") == strings.Join(strings.Fields(legacy), " ")
}

// legacyIndexes maps the names earlier jobwatch installations gave two of
// PgQueuer's indexes (same definitions) to PgQueuer's names.
func (n Names) legacyIndexes() [][2]string {
	return [][2]string{
		{n.Queue + "_dequeue_priority_idx", n.IdxDequeuePriority},
		{n.Queue + "_dequeue_after_idx", n.IdxDequeueAfter},
	}
}

// Existing is what ExistingSQL found in a complete installation. Fill it
// with Add, one row at a time.
type Existing struct {
	// Indexes maps the name of each index on the queue, log and statistics
	// tables to its reference (quoted, and qualified unless search_path
	// finds it), for DDL.
	Indexes map[string]string
	// FunctionSource is the trigger function's body.
	FunctionSource string
}

// Add records one row of ExistingSQL.
func (e *Existing) Add(kind, name, detail string) {
	switch kind {
	case "index":
		if e.Indexes == nil {
			e.Indexes = make(map[string]string)
		}
		e.Indexes[name] = detail
	case "function":
		e.FunctionSource = detail
	}
}

// ExistingSQL reads what Upgrade needs of a complete installation: rows of
// kind text ('index' or 'function'), name text, detail text (an index's
// reference, the function's body). No params.
func (n Names) ExistingSQL() string {
	reg := func(name string) string { return "pg_catalog.to_regclass(" + QuoteLiteral(name) + ")" }
	return `SELECT 'index'::text, c.relname::text, c.oid::pg_catalog.regclass::text
FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid IN (` + reg(n.qQueue()) + `, ` + reg(n.qLog()) + `, ` + reg(n.qStats()) + `)
UNION ALL
SELECT 'function'::text, p.proname::text, p.prosrc
FROM pg_catalog.pg_proc p
WHERE p.oid = pg_catalog.to_regprocedure(` + QuoteLiteral(n.qFunction()+"()") + `)`
}

// Change is one step of an upgrade: what it does, in words, and its SQL.
type Change struct {
	What string
	SQL  string
}

// Upgrade returns the steps that bring a complete installation, as
// ExistingSQL found it, to exactly what InstallSQL creates, without touching
// data: the two indexes an earlier jobwatch named differently are renamed
// to PgQueuer's names (or dropped, when PgQueuer's upgrade already created
// them alongside), every missing index is created, and the earlier jobwatch
// trigger function, which notified on every UPDATE, is replaced. Any other
// function body (PgQueuer's own, of any version) and any extra index (such
// as the one PgQueuer's upgrade adds) is left alone. None for a PgQueuer
// installation. Run them in order, in the transaction holding LockSQL.
func (n Names) Upgrade(e Existing) []Change {
	have := make(map[string]bool, len(e.Indexes))
	for name := range e.Indexes {
		have[name] = true
	}
	var out []Change
	for _, r := range n.legacyIndexes() {
		old, name := r[0], r[1]
		ref, ok := e.Indexes[old]
		if !ok {
			continue
		}
		if have[name] {
			out = append(out, Change{fmt.Sprintf("dropped index %s (a duplicate of %s)", old, name), "DROP INDEX " + ref})
		} else {
			out = append(out, Change{fmt.Sprintf("renamed index %s to %s", old, name),
				"ALTER INDEX " + ref + " RENAME TO " + QuoteIdentifier(name)})
			have[name] = true
		}
	}
	for _, ix := range n.Indexes() {
		if !have[ix.Name] {
			out = append(out, Change{"created index " + ix.Name, ix.SQL})
		}
	}
	if n.isLegacyFunction(e.FunctionSource) {
		out = append(out, Change{"replaced function " + n.Function + "(): an UPDATE no longer notifies",
			n.functionSQL("CREATE OR REPLACE FUNCTION")})
	}
	return out
}

// UninstallSQL drops every object (those that exist), the enum with
// CASCADE. Run it in a transaction holding LockSQL. Several commands, no
// params.
func (n Names) UninstallSQL() string {
	return "DROP TABLE IF EXISTS " + strings.Join([]string{n.qQueue(), n.qLog(), n.qStats(), n.qSchedules()}, ", ") + ";\n" +
		"DROP FUNCTION IF EXISTS " + n.qFunction() + "();\n" +
		"DROP TYPE IF EXISTS " + n.qType() + " CASCADE;\n"
}

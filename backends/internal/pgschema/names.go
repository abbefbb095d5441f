// Package pgschema is the SQL that the PostgreSQL backends (backends/pgx and
// backends/pq) share: validated, quoted object names, the installer (the
// objects PgQueuer's installer creates) and its upgrade of earlier jobwatch
// installations, the status read and the job lifecycle statements.
//
// Everything here is text and pure functions; nothing opens a connection.
// The SQL is written for both jackc/pgx and database/sql with lib/pq:
// positional $n parameters, each with an explicit cast, and array parameters
// passed as Go slices ([]int64, []string, [][]byte, []float64). pgx encodes
// those natively; a database/sql caller wraps each slice with pq.Array (see
// Stmt). Statements without parameters may hold several commands and must be
// sent with the simple query protocol (pgx and lib/pq both do so for Exec
// without arguments).
package pgschema

import (
	"fmt"
)

// Default (unprefixed) object names, as PgQueuer names them.
const (
	DefaultStatusType = "pgqueuer_status"
	DefaultQueue      = "pgqueuer"
	DefaultLog        = "pgqueuer_log"
	DefaultStatistics = "pgqueuer_statistics"
	DefaultSchedules  = "pgqueuer_schedules"
	DefaultFunction   = "fn_pgqueuer_changed"
	DefaultTrigger    = "tg_pgqueuer_changed"
	DefaultChannel    = "ch_pgqueuer"
)

// Names are the validated, unquoted names of every object of one
// installation. The prefix is prepended to every name (as PgQueuer's
// PGQUEUER_PREFIX is); Schema, when set, qualifies every object (not the
// channel, which is database-wide). Build it with NewNames; the zero value
// is not usable.
type Names struct {
	Prefix string // as given; may be empty
	Schema string // as given; empty means unqualified (search_path decides)

	StatusType string // enum of the seven states
	Queue      string // queue table
	Log        string // log table
	Statistics string // statistics table
	Schedules  string // schedules table
	Function   string // trigger function
	Trigger    string // statement-level trigger on Queue
	// Channel is the NOTIFY channel, used verbatim: quoted in LISTEN and
	// passed as-is to pg_notify, so both name the same channel.
	Channel string

	// Index names: PgQueuer's, for the indexes its installer creates (see
	// Indexes for their definitions).
	IdxPriorityID       string // (priority ASC, id DESC) INCLUDE (id) WHERE queued
	IdxUpdatedID        string // (updated ASC, id DESC) INCLUDE (id) WHERE picked
	IdxQueueManager     string // (queue_manager_id) WHERE NOT NULL
	IdxDequeuePriority  string // (entrypoint, priority DESC, id ASC) WHERE queued
	IdxDequeueAfter     string // (entrypoint, execute_after) WHERE queued
	IdxDedupe           string // unique (dedupe_key) WHERE status IN (queued, picked)
	IdxLogNotAggregated string // log ((1)) WHERE NOT aggregated
	IdxLogCreated       string // log (created)
	IdxLogStatus        string // log (status)
	IdxLogJob           string // log (job_id, created DESC)
	IdxStatsUnique      string // statistics unique count key
}

// NewNames validates prefix and schema and builds every name from them. It
// fails, with an error matching ErrInvalidIdentifier, when the prefix or
// schema contains a character other than a letter, digit, '_' or '-', or when
// the schema or any resulting object name is longer than 63 bytes.
func NewNames(prefix, schema string) (Names, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return Names{}, err
	}
	if schema != "" {
		if err := ValidateIdentifier("schema", schema); err != nil {
			return Names{}, err
		}
	}
	n := Names{
		Prefix:     prefix,
		Schema:     schema,
		StatusType: prefix + DefaultStatusType,
		Queue:      prefix + DefaultQueue,
		Log:        prefix + DefaultLog,
		Statistics: prefix + DefaultStatistics,
		Schedules:  prefix + DefaultSchedules,
		Function:   prefix + DefaultFunction,
		Trigger:    prefix + DefaultTrigger,
		Channel:    prefix + DefaultChannel,
	}
	n.IdxPriorityID = n.Queue + "_priority_id_id1_idx"
	n.IdxUpdatedID = n.Queue + "_updated_id_id1_idx"
	n.IdxQueueManager = n.Queue + "_queue_manager_id_idx"
	n.IdxDequeuePriority = n.Queue + "_ep_prio_id_idx"
	n.IdxDequeueAfter = n.Queue + "_ep_ea_idx"
	n.IdxDedupe = n.Queue + "_unique_dedupe_key"
	n.IdxLogNotAggregated = n.Log + "_not_aggregated"
	n.IdxLogCreated = n.Log + "_created"
	n.IdxLogStatus = n.Log + "_status"
	n.IdxLogJob = n.Log + "_job_id_status"
	n.IdxStatsUnique = n.Statistics + "_unique_count"
	for _, o := range n.objects() {
		if err := checkLen(o.kind, o.name); err != nil {
			ie := err.(*IdentifierError)
			ie.Reason += fmt.Sprintf(" (prefix %q is %d bytes too long)", prefix, len(o.name)-MaxIdentifierBytes)
			return Names{}, ie
		}
	}
	return n, nil
}

type object struct{ kind, name string }

func (n Names) objects() []object {
	out := []object{
		{"status type name", n.StatusType},
		{"queue table name", n.Queue},
		{"log table name", n.Log},
		{"statistics table name", n.Statistics},
		{"schedules table name", n.Schedules},
		{"function name", n.Function},
		{"trigger name", n.Trigger},
		{"channel", n.Channel},
	}
	for _, ix := range n.Indexes() {
		out = append(out, object{"index name", ix.Name})
	}
	return out
}

// MaxPrefixBytes is the longest prefix NewNames accepts: the longest derived
// name ("pgqueuer_statistics_unique_count", 32 bytes) must still fit in 63.
const MaxPrefixBytes = MaxIdentifierBytes - len(DefaultStatistics+"_unique_count")

// Qualify returns the quoted, schema-qualified form of an object name of
// this installation: "schema"."name", or "name" without a schema.
func (n Names) Qualify(name string) string {
	if n.Schema == "" {
		return QuoteIdentifier(name)
	}
	return QuoteIdentifier(n.Schema) + "." + QuoteIdentifier(name)
}

// Quoted, qualified names for SQL text.
func (n Names) qType() string      { return n.Qualify(n.StatusType) }
func (n Names) qQueue() string     { return n.Qualify(n.Queue) }
func (n Names) qLog() string       { return n.Qualify(n.Log) }
func (n Names) qStats() string     { return n.Qualify(n.Statistics) }
func (n Names) qSchedules() string { return n.Qualify(n.Schedules) }
func (n Names) qFunction() string  { return n.Qualify(n.Function) }

// QueueTable is the quoted, qualified queue table, for SQL text.
func (n Names) QueueTable() string { return n.qQueue() }

// LogTable is the quoted, qualified log table, for SQL text.
func (n Names) LogTable() string { return n.qLog() }

// ListenSQL is the LISTEN command for the channel (quoted, so the case and
// every byte of the name are kept).
func (n Names) ListenSQL() string { return "LISTEN " + QuoteIdentifier(n.Channel) }

// UnlistenSQL is the UNLISTEN command for the channel.
func (n Names) UnlistenSQL() string { return "UNLISTEN " + QuoteIdentifier(n.Channel) }

// NotifySQL sends $1 (text) as a payload on the channel. The channel is a
// literal, the exact string LISTEN used. Params: $1 text.
func (n Names) NotifySQL() string {
	return "SELECT pg_notify(" + QuoteLiteral(n.Channel) + ", $1::text)"
}

// ListenerPIDSQL finds a listening connection's server process id by its
// application_name (the newest such session): one row, pid bigint, or none.
// It names no object of an installation. Params: $1 text.
const ListenerPIDSQL = `SELECT pid::bigint FROM pg_catalog.pg_stat_activity WHERE application_name = $1::text ORDER BY backend_start DESC LIMIT 1`

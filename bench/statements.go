package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// cost is what one role's statements cost the server over a phase, as
// pg_stat_statements counts it: every top-level statement the role ran.
type cost struct {
	Statements int64   `json:"statements"` // calls
	ExecMS     float64 `json:"exec_ms"`    // sum of total_exec_time: the DB time
	PlanMS     float64 `json:"plan_ms"`    // sum of total_plan_time (0 unless track_planning)
	Rows       int64   `json:"rows"`       // rows returned or affected
	Buffers    int64   `json:"buffers"`    // shared blocks hit or read
	// ByStatement splits the cost by normalised statement, the most
	// expensive first.
	ByStatement []stmtCost `json:"by_statement,omitempty"`
}

// stmtCost is one normalised statement's share of a cost.
type stmtCost struct {
	Query      string  `json:"query"`
	Statements int64   `json:"statements"`
	ExecMS     float64 `json:"exec_ms"`
	Rows       int64   `json:"rows"`
}

// counter reads pg_stat_statements for one role.
type counter struct {
	t    *target
	role string
}

// snapshot is the role's per-statement counters at one moment, by queryid.
type snapshot struct {
	byQuery map[int64]stmtRow
	dealloc int64 // pg_stat_statements_info.dealloc: entries evicted so far
}

type stmtRow struct {
	query                string
	calls, rows, buffers int64
	execMS, planMS       float64
}

// reset zeroes the role's counters (only the role's: a shared server's
// other statistics are left alone).
func (c counter) reset(ctx context.Context) error {
	_, err := c.t.admin.Exec(ctx,
		"SELECT pg_stat_statements_reset((SELECT oid FROM pg_roles WHERE rolname = $1), (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
		c.role)
	if err != nil {
		return fmt.Errorf("reset pg_stat_statements: %w", err)
	}
	return nil
}

// take reads the role's counters now.
func (c counter) take(ctx context.Context) (snapshot, error) {
	rows, err := c.t.admin.Query(ctx, `
SELECT s.queryid, left(regexp_replace(s.query, '\s+', ' ', 'g'), 160), s.calls, s.total_exec_time, s.total_plan_time,
       s.rows, s.shared_blks_hit + s.shared_blks_read
FROM pg_stat_statements s
WHERE s.userid = (SELECT oid FROM pg_roles WHERE rolname = $1)
  AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, c.role)
	if err != nil {
		return snapshot{}, fmt.Errorf("read pg_stat_statements: %w", err)
	}
	defer rows.Close()
	s := snapshot{byQuery: map[int64]stmtRow{}}
	for rows.Next() {
		var id int64
		var r stmtRow
		if err := rows.Scan(&id, &r.query, &r.calls, &r.execMS, &r.planMS, &r.rows, &r.buffers); err != nil {
			return snapshot{}, err
		}
		s.byQuery[id] = r
	}
	if err := rows.Err(); err != nil {
		return snapshot{}, err
	}
	if err := c.t.admin.QueryRow(ctx, "SELECT dealloc FROM pg_stat_statements_info").Scan(&s.dealloc); err != nil {
		return snapshot{}, fmt.Errorf("read pg_stat_statements_info: %w", err)
	}
	return s, nil
}

// since is the cost from an earlier snapshot to s, and whether entries
// were evicted in between (the counts may then be low).
func (s snapshot) since(earlier snapshot) (cost, bool) {
	var c cost
	var parts []stmtCost
	for id, r := range s.byQuery {
		e := earlier.byQuery[id]
		d := stmtRow{query: r.query, calls: r.calls - e.calls, rows: r.rows - e.rows, buffers: r.buffers - e.buffers,
			execMS: r.execMS - e.execMS, planMS: r.planMS - e.planMS}
		if d.calls <= 0 {
			continue
		}
		c.Statements += d.calls
		c.ExecMS += d.execMS
		c.PlanMS += d.planMS
		c.Rows += d.rows
		c.Buffers += d.buffers
		parts = append(parts, stmtCost{Query: d.query, Statements: d.calls, ExecMS: d.execMS, Rows: d.rows})
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].ExecMS > parts[j].ExecMS })
	c.ByStatement = parts
	return c, s.dealloc != earlier.dealloc
}

// describe is a one-line summary for the progress log.
func (c cost) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d statements, %.1f ms DB time, %d rows", c.Statements, c.ExecMS, c.Rows)
	return b.String()
}

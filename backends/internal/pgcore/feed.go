package pgcore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
)

// Changes implements jobwatch.ChangeFeed over the log table: see cursor
// for how commits that land out of id order are still seen. A row whose
// job's status cannot be parsed (a value added to the enum by a newer
// PgQueuer, say) is counted in Skipped and moved past, so one bad row
// never blocks the feed for the jobs after it.
func (c *Core) Changes(ctx context.Context, cur jobwatch.Cursor) (jobwatch.ChangeSet, error) {
	if cur == nil {
		return c.startChanges(ctx)
	}
	pos, ok := cur.(cursor)
	if !ok {
		return jobwatch.ChangeSet{}, c.Fail("changes", fmt.Errorf("not a cursor of this backend: %T", cur))
	}
	var (
		holders sql.NullString
		seen    []int64
		byJob   = map[int64]bool{}
		result  []jobwatch.Status
		skipped int
	)
	args := []any{pos.high, pos.gapIDs(), pos.needsListing()}
	err := query(ctx, c.c.DB, c.c.Names.ChangesSQL(), args, func(r Rows) error {
		var logID, jobID sql.NullInt64
		var status sql.NullString
		if err := r.Scan(&holders, &logID, &jobID, &status); err != nil {
			return err
		}
		if !logID.Valid {
			return nil
		}
		seen = append(seen, logID.Int64)
		// Every row of a job carries the job's current status, so a job
		// is parsed once and each of its rows shares the outcome.
		ok, done := byJob[jobID.Int64]
		if !done {
			st, err := pgschema.ParseStatus(jobID.Int64, status.String)
			if ok = err == nil; ok {
				result = append(result, st)
			}
			byJob[jobID.Int64] = ok
		}
		if !ok {
			skipped++
		}
		return nil
	})
	if err != nil {
		return jobwatch.ChangeSet{}, c.FailRead("changes", err)
	}
	next, partial := pos.advance(seen, splitHolders(holders.String), holders.Valid)
	return jobwatch.ChangeSet{Statuses: result, Cursor: next, Partial: partial, Skipped: skipped}, nil
}

func (c *Core) startChanges(ctx context.Context) (jobwatch.ChangeSet, error) {
	var high int64
	var holders sql.NullString
	if err := queryRow(ctx, c.c.DB, c.c.Names.ChangesStartSQL(), nil, &high, &holders); err != nil {
		return jobwatch.ChangeSet{}, c.FailRead("changes", err)
	}
	return jobwatch.ChangeSet{Cursor: startCursor(high, splitHolders(holders.String)), Partial: true}, nil
}

// splitHolders parses the holders column, sorted as the cursor compares
// them (the server sorted by its collation, not bytewise).
func splitHolders(s string) []string {
	if s == "" {
		return nil
	}
	out := strings.Split(s, ",")
	slices.Sort(out)
	return out
}

// CursorGaps reports how many missing log ids cur still tracks, and
// whether it is still partial; for tests.
func CursorGaps(cur jobwatch.Cursor) (gaps int, partial bool) {
	c, _ := cur.(cursor)
	return len(c.gaps), c.partial != nil
}

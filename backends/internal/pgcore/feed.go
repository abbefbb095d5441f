package pgcore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
)

// Changes implements jobwatch.ChangeFeed over the log table: see cursor
// for how commits that land out of id order are still seen.
func (c *Core) Changes(ctx context.Context, cur jobwatch.Cursor) (jobwatch.ChangeSet, error) {
	if cur == nil {
		return c.startChanges(ctx)
	}
	pos, ok := cur.(cursor)
	if !ok {
		return jobwatch.ChangeSet{}, c.Fail("changes", fmt.Errorf("not a cursor of this backend: %T", cur))
	}
	var (
		snap   snapshot
		seen   []int64
		byJob  = map[int64]bool{}
		result []jobwatch.Status
	)
	err := query(ctx, c.c.DB, c.c.Names.ChangesSQL(), []any{pos.high, pos.gapIDs()}, func(r Rows) error {
		var logID, jobID sql.NullInt64
		var status sql.NullString
		if err := r.Scan(&snap.xmin, &snap.xmax, &logID, &jobID, &status); err != nil {
			return err
		}
		if !logID.Valid {
			return nil
		}
		seen = append(seen, logID.Int64)
		if byJob[jobID.Int64] {
			return nil
		}
		byJob[jobID.Int64] = true
		st, err := pgschema.ParseStatus(jobID.Int64, status.String)
		if err != nil {
			return err
		}
		result = append(result, st)
		return nil
	})
	if err != nil {
		return jobwatch.ChangeSet{}, c.FailRead("changes", err)
	}
	next, partial := pos.advance(snap, seen)
	return jobwatch.ChangeSet{Statuses: result, Cursor: next, Partial: partial}, nil
}

func (c *Core) startChanges(ctx context.Context) (jobwatch.ChangeSet, error) {
	var snap snapshot
	var high int64
	if err := queryRow(ctx, c.c.DB, c.c.Names.ChangesStartSQL(), nil, &snap.xmin, &snap.xmax, &high); err != nil {
		return jobwatch.ChangeSet{}, c.FailRead("changes", err)
	}
	return jobwatch.ChangeSet{Cursor: startCursor(snap, high), Partial: true}, nil
}

// CursorGaps reports how many missing log ids cur still tracks, and
// whether it is still partial; for tests.
func CursorGaps(cur jobwatch.Cursor) (gaps int, partial bool) {
	c, _ := cur.(cursor)
	return len(c.gaps), c.partialUntil != 0
}

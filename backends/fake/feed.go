package fake

import (
	"context"
	"fmt"

	"github.com/jobwatch/jobwatch"
)

// cursor is a position in the changelog.
type cursor struct{ pos int }

// Changes implements jobwatch.ChangeFeed: the committed state of every job
// changed by a commit after cur, each once. Commits are applied one at a
// time, so the feed is exact: only the ChangeSet that starts a feed (a nil
// cursor, at the present) is Partial, as the contract has it.
//
// It counts in Counters.Reads and FeedReads, fails while FailReads is in
// effect, and returns ctx.Err() when ctx is done, an error matching
// ErrInvalidArgument for a cursor it did not make, and one matching
// ErrClosed after Close.
func (b *Backend) Changes(ctx context.Context, cur jobwatch.Cursor) (jobwatch.ChangeSet, error) {
	if err := checkCtx(ctx); err != nil {
		return jobwatch.ChangeSet{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return jobwatch.ChangeSet{}, fmt.Errorf("fake: changes: %w", ErrClosed)
	}
	from := len(b.changelog)
	if cur != nil {
		c, ok := cur.(cursor)
		if !ok || c.pos < 0 || c.pos > len(b.changelog) {
			return jobwatch.ChangeSet{}, fmt.Errorf("fake: changes: %w: cursor %v", ErrInvalidArgument, cur)
		}
		from = c.pos
	}
	b.counts.reads++
	b.counts.feedReads++
	b.broadcastLocked()
	if err := b.faults.takeRead(); err != nil {
		return jobwatch.ChangeSet{}, fmt.Errorf("fake: changes: %w", err)
	}
	seen := make(map[jobwatch.JobID]bool)
	var out []jobwatch.Status
	for _, id := range b.changelog[from:] {
		if !seen[id] {
			seen[id] = true
			out = append(out, jobwatch.Status{ID: id, State: b.store.jobs[id].job.Status})
		}
	}
	b.counts.changesRead += uint64(len(out))
	return jobwatch.ChangeSet{Statuses: out, Cursor: cursor{len(b.changelog)}, Partial: cur == nil}, nil
}

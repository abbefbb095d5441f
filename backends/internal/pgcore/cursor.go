package pgcore

import "slices"

// MaxGaps bounds how many missing log ids a cursor tracks one by one.
// More (a large rolled-back batch, say) make the feed Partial until every
// transaction that was running has ended.
const MaxGaps = 10_000

// cursor is a position in the log table's change feed.
//
// high is the highest log id seen. Ids at or below it that were not seen
// are gaps: rows of transactions still running (they will commit late,
// out of order), of rolled-back transactions, or deleted. Every read asks
// for the gaps again, by primary key, until they show up or cannot any
// more.
//
// A gap cannot show up any more once every transaction that could have
// taken its id has ended. Its id was taken before the read that first
// missed it; the taking transaction has its xid by the next read (an id is
// taken by the INSERT that writes the row). So the gap records xmax of the
// read after the first miss, and retires at a read whose xmin has reached
// it: no transaction older than that is running, so the row would be
// visible if it were ever committed.
//
// partialUntil, when not zero, is an xmax that the snapshot's xmin must
// reach before the feed vouches for everything at or below high: a fresh
// cursor cannot know the ids of transactions already running, nor can a
// cursor that had to drop gaps.
type cursor struct {
	high         int64
	gaps         []gap // ascending ids
	partialUntil int64
}

type gap struct {
	id    int64
	until int64 // xmax to wait for; 0 until the second miss
}

// snapshot is the xmin and xmax of a read's snapshot (xid8 as int64).
type snapshot struct{ xmin, xmax int64 }

// startCursor is a fresh cursor at high, taken in snap.
func startCursor(snap snapshot, high int64) cursor {
	return cursor{high: high, partialUntil: snap.xmax}
}

// advance returns the cursor after a read in snap that returned the log
// ids seen (ascending), and whether that read was partial: the watcher
// must then re-read every pending job to be sure. A cursor stays partial
// up to and including the first read in which its partialUntil has been
// reached, because only a read made after those transactions ended sees
// all of them.
func (c cursor) advance(snap snapshot, seen []int64) (next cursor, partial bool) {
	partial = c.partialUntil != 0
	next.partialUntil = c.partialUntil
	if partial && snap.xmin >= c.partialUntil {
		next.partialUntil = 0
	}
	next.high = c.high
	if n := len(seen); n > 0 && seen[n-1] > next.high {
		next.high = seen[n-1]
	}
	for _, g := range c.gaps {
		switch {
		case contains(seen, g.id):
		case g.until == 0:
			next.gaps = append(next.gaps, gap{id: g.id, until: snap.xmax})
		case snap.xmin < g.until:
			next.gaps = append(next.gaps, g)
		}
	}
	for id := c.high + 1; id < next.high; id++ {
		if len(next.gaps) >= MaxGaps {
			next.partialUntil = max(next.partialUntil, snap.xmax)
			partial = true
			break
		}
		if !contains(seen, id) {
			next.gaps = append(next.gaps, gap{id: id})
		}
	}
	return next, partial
}

// gapIDs are the ids to ask for again.
func (c cursor) gapIDs() []int64 {
	out := make([]int64, len(c.gaps))
	for i, g := range c.gaps {
		out[i] = g.id
	}
	return out
}

func contains(sorted []int64, id int64) bool {
	_, ok := slices.BinarySearch(sorted, id)
	return ok
}

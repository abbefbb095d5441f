package pgcore

import "slices"

// MaxGaps bounds how many missing log ids a cursor tracks one by one.
// More (a large rolled-back batch, say) make the feed Partial until every
// transaction that could have taken them has ended.
const MaxGaps = 10_000

// cursor is a position in the log table's change feed.
//
// high is the highest log id seen. Ids at or below it that were not seen
// are gaps: rows of transactions still running (they will commit late,
// out of order), of rolled-back transactions, or deleted. Every read asks
// for the gaps again, by primary key, until they show up or cannot any
// more.
//
// When a gap cannot show up any more: the rule and why it holds.
//
// A read may also list the holders: the virtual transaction ids of every
// transaction holding a lock on the log id sequence (pg_locks), taken
// while the read's statement runs, so after its snapshot. nextval takes
// that lock for the top-level transaction and keeps it until the
// transaction ends, and PostgreSQL releases locks only after a commit is
// visible to new snapshots (prepared transactions keep theirs, under a
// "-1/xid" id, until COMMIT PREPARED). So a transaction missing from a
// list has either not taken an id yet or ended, committed visibly, before
// the list was taken.
//
// Gap g is first missed by read R1 because some id above g was seen. The
// sequence (CACHE 1, as PgQueuer installs it) hands out ids in order, so
// g's nextval ran before that id's, which committed before R1's snapshot:
// the transaction T that took g had begun by then, and had not committed
// (or R1 would have seen g). At the first listing after R1's snapshot, T
// holds the lock, or T has ended. The gap waits on that listing's
// holders; each later listing drops those that no longer hold it. Once
// none is left, T has ended before that listing, and every read after it
// sees g if T committed it: g is asked for once more, and retired if it
// is still missing then (not in the read whose listing emptied the set:
// T may commit between that read's snapshot and its listing).
//
// Nothing here depends on when T got its xid (nextval runs before the
// INSERT gives it one, and a BEFORE trigger can run in between), on
// commit order, or on who wrote the row (PgQueuer's own SQL included):
// only on the lock nextval takes. That is why the rule is not phrased in
// xids: pg_snapshot_xmax is one past the newest completed xid, so a
// transaction holding the newest xid, or none yet, is neither below xmin
// nor in xip, and a horizon taken from the snapshot retires its gap while
// it can still commit. A horizon from an assigned xid (pg_current_xact_id)
// fails the same way for a transaction that has its id but not yet its
// xid, and would cost an xid and a commit record per read.
//
// partial is the same wait for ids the cursor does not track one by one:
// a fresh cursor's (ids at or below its start were taken by transactions
// running at its snapshot, by the same argument) and those dropped beyond
// MaxGaps. Reads are Partial while it waits, through the read whose
// listing empties it: the Watcher re-reads every pending job after that
// read, in a snapshot taken after those transactions ended.
//
// The assumption: log ids come from the log's identity sequence, with
// CACHE 1. A writer that supplies ids itself, or a cached sequence, can
// fill a gap the cursor has already retired.
type cursor struct {
	high    int64
	gaps    []gap    // ascending ids
	partial *horizon // nil when the feed vouches for everything at or below high
}

type gap struct {
	id    int64
	wait  horizon
	final bool // wait has ended: one more miss retires the gap
}

// horizon is the set of transactions a miss waits for.
type horizon struct {
	listed bool     // a listing has been taken since the miss
	on     []string // its holders that still held the lock at the last listing, sorted
}

// after is h once a read listed holders (sorted; listed false when the
// read took no listing).
func (h horizon) after(holders []string, listed bool, memo map[*string][]string) horizon {
	switch {
	case !listed:
		return h
	case !h.listed:
		return horizon{listed: true, on: holders}
	case len(h.on) == 0:
		return h
	}
	// Gaps missed at the same read share one slice: intersect it once.
	key := &h.on[0]
	if on, ok := memo[key]; ok {
		return horizon{listed: true, on: on}
	}
	on := intersect(h.on, holders)
	memo[key] = on
	return horizon{listed: true, on: on}
}

// ended says every transaction waited for has ended.
func (h horizon) ended() bool { return h.listed && len(h.on) == 0 }

// startCursor is a fresh cursor at high, with the holders listed by the
// read that found high.
func startCursor(high int64, holders []string) cursor {
	c := cursor{high: high}
	if h := (horizon{}).after(holders, true, nil); !h.ended() {
		c.partial = &h
	}
	return c
}

// needsListing says whether the next read must list the holders: only
// while something waits on them, so a feed without gaps costs nothing more.
func (c cursor) needsListing() bool { return len(c.gaps) > 0 || c.partial != nil }

// advance returns the cursor after a read that returned the log ids seen
// (ascending) and, when listed, the holders (sorted), and whether that
// read was partial: the watcher must then re-read every pending job to be
// sure.
func (c cursor) advance(seen []int64, holders []string, listed bool) (next cursor, partial bool) {
	memo := map[*string][]string{}
	if c.partial != nil {
		partial = true
		if h := c.partial.after(holders, listed, memo); !h.ended() {
			next.partial = &h
		}
	}
	next.high = c.high
	if n := len(seen); n > 0 && seen[n-1] > next.high {
		next.high = seen[n-1]
	}
	for _, g := range c.gaps {
		if g.final || contains(seen, g.id) {
			continue
		}
		w := g.wait.after(holders, listed, memo)
		next.gaps = append(next.gaps, gap{id: g.id, wait: w, final: w.ended()})
	}
	fresh := (horizon{}).after(holders, listed, nil)
	for id := c.high + 1; id < next.high; id++ {
		if len(next.gaps) >= MaxGaps {
			partial = true
			switch {
			case fresh.ended():
				// The takers of the ids not tracked ended before this
				// read's listing, so before the re-read that follows.
			case next.partial == nil || !listed:
				// A later listing holds every still-running member of an
				// earlier one, since they keep the lock until they end.
				h := fresh
				next.partial = &h
			default:
				next.partial = &horizon{listed: true, on: union(next.partial.on, holders)}
			}
			break
		}
		if !contains(seen, id) {
			next.gaps = append(next.gaps, gap{id: id, wait: fresh, final: fresh.ended()})
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

// intersect returns the members of sorted a also in sorted b.
func intersect(a, b []string) []string {
	var out []string
	for _, s := range a {
		if _, ok := slices.BinarySearch(b, s); ok {
			out = append(out, s)
		}
	}
	return out
}

// union returns the members of sorted a or b, sorted.
func union(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

package pgcore

import (
	"slices"
	"testing"
)

// read is one read as advance sees it: the log ids seen and, when listed,
// the holders of the sequence lock.
type read struct {
	seen    []int64
	holders []string
	listed  bool
}

func listing(holders ...string) read { return read{holders: holders, listed: true} }

func (r read) with(seen ...int64) read { r.seen = seen; return r }

// Each step is one read and what the cursor must be afterwards.
func TestCursorAdvance(t *testing.T) {
	type step struct {
		read        read
		wantHigh    int64
		wantGaps    []int64
		wantPartial bool
	}
	tests := []struct {
		name  string
		start cursor
		steps []step
	}{
		{"in order, nothing running", cursor{high: 10}, []step{
			{read{seen: []int64{11, 12}}, 12, nil, false},
			{read{}, 12, nil, false},
		}},
		{"late commit fills its gap", cursor{high: 10}, []step{
			// 11 belongs to transaction 3/7, still running: missed.
			{read{seen: []int64{12}}, 12, []int64{11}, false},
			{listing("3/7"), 12, []int64{11}, false},
			{listing("3/7", "4/2"), 12, []int64{11}, false},
			// 3/7 commits: the row shows up and the gap closes.
			{listing("4/2").with(11), 12, nil, false},
		}},
		{"rolled-back gap retires one read after its takers ended", cursor{high: 10}, []step{
			{read{seen: []int64{12}}, 12, []int64{11}, false},
			{listing("3/7", "5/1"), 12, []int64{11}, false},
			{listing("5/1", "6/9"), 12, []int64{11}, false}, // 5/1 may hold it; 6/9 came later
			{listing("6/9"), 12, []int64{11}, false},        // all ended, but maybe after this snapshot
			{listing("6/9"), 12, nil, false},                // missed after they ended: retired
		}},
		// The defect of a snapshot horizon: B holds the newest xid, so the
		// snapshot after A's commit is b:b: and an xmin rule retires the
		// gap at once. B holds the sequence lock until it ends.
		{"transaction with the newest xid keeps its gap", cursor{high: 10}, []step{
			{read{seen: []int64{12}}, 12, []int64{11}, false},
			{listing("B"), 12, []int64{11}, false},
			{listing("B"), 12, []int64{11}, false},
			{listing("B"), 12, []int64{11}, false},
			{listing().with(11), 12, nil, false},
		}},
		{"gaps found by a listed read wait on its listing", cursor{high: 10, gaps: []gap{{id: 5, wait: horizon{listed: true, on: []string{"1/1"}}}}}, []step{
			{listing("1/1", "2/2").with(13), 13, []int64{5, 11, 12}, false},
			{listing("2/2"), 13, []int64{5, 11, 12}, false}, // 5 final now, 11 and 12 wait on 2/2
			{listing(), 13, []int64{11, 12}, false},
			{listing(), 13, nil, false},
		}},
		{"fresh cursor is partial through the read whose listing is empty", startCursor(10, []string{"1/1", "2/2"}), []step{
			{listing("1/1", "2/2", "3/3"), 10, nil, true},
			{listing("2/2", "3/3"), 10, nil, true},
			{listing("3/3"), 10, nil, true}, // the re-read after this one sees them
			{read{}, 10, nil, false},
		}},
		{"fresh cursor with nothing running vouches at once", startCursor(10, nil), []step{
			{read{}, 10, nil, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.start
			for i, s := range tt.steps {
				if !s.read.listed && c.needsListing() {
					t.Fatalf("step %d: read without a listing while the cursor needs one", i)
				}
				var partial bool
				c, partial = c.advance(s.read.seen, s.read.holders, s.read.listed)
				if c.high != s.wantHigh || partial != s.wantPartial || !slices.Equal(c.gapIDs(), s.wantGaps) {
					t.Fatalf("step %d: high %d gaps %v partial %v; want %d %v %v",
						i, c.high, c.gapIDs(), partial, s.wantHigh, s.wantGaps, s.wantPartial)
				}
			}
		})
	}
}

// Too many missing ids (a large rolled-back batch) are not tracked one by
// one: the feed turns partial until every transaction holding the
// sequence lock at the next listing has ended.
func TestCursorGapOverflow(t *testing.T) {
	tests := []struct {
		name  string
		first read
		then  []read // partial through the last of them, not after
	}{
		{"unlisted read", read{seen: []int64{MaxGaps + 100}}, []read{listing("1/1"), listing("2/2")}},
		{"listed read", listing("1/1").with(MaxGaps + 100), []read{listing("1/1", "2/2"), listing("2/2")}},
		{"listed read, nothing running", listing().with(MaxGaps + 100), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cursor{high: 0}
			next, partial := c.advance(tt.first.seen, tt.first.holders, tt.first.listed)
			if !partial || len(next.gaps) != MaxGaps {
				t.Fatalf("partial %v, %d gaps", partial, len(next.gaps))
			}
			for i, r := range append(tt.then, listing()) {
				next, partial = next.advance(nil, r.holders, r.listed)
				if want := i < len(tt.then); partial != want {
					t.Fatalf("read %d after the overflow: partial %v, want %v", i, partial, want)
				}
			}
		})
	}
}

// advance never changes the cursor it was called on: a cursor handed to
// the watcher stays valid if a later read fails.
func TestCursorAdvanceLeavesInputAlone(t *testing.T) {
	h := horizon{listed: true, on: []string{"1/1", "2/2"}}
	c := cursor{high: 5, gaps: []gap{{id: 3}, {id: 4, wait: h}}, partial: &h}
	before := slices.Clone(c.gaps)
	_, _ = c.advance([]int64{3, 6}, []string{"2/2"}, true)
	if !slices.EqualFunc(c.gaps, before, func(a, b gap) bool {
		return a.id == b.id && a.final == b.final && slices.Equal(a.wait.on, b.wait.on)
	}) || c.high != 5 || !slices.Equal(c.partial.on, []string{"1/1", "2/2"}) {
		t.Fatalf("input cursor changed: %+v", c)
	}
}

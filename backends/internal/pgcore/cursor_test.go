package pgcore

import (
	"slices"
	"testing"
)

func gapsOf(c cursor) []gap { return slices.Clone(c.gaps) }

// Each step is one read: its snapshot, the log ids it saw, and what the
// cursor must be afterwards.
func TestCursorAdvance(t *testing.T) {
	type step struct {
		snap        snapshot
		seen        []int64
		wantHigh    int64
		wantGaps    []gap
		wantPartial bool
	}
	tests := []struct {
		name  string
		start cursor
		steps []step
	}{
		{"in order, nothing running", cursor{high: 10}, []step{
			{snapshot{100, 100}, []int64{11, 12}, 12, nil, false},
			{snapshot{101, 101}, nil, 12, nil, false},
		}},
		{"late commit fills its gap", cursor{high: 10}, []step{
			// 11 belongs to xid 90, still running: missed, so a gap.
			{snapshot{90, 100}, []int64{12}, 12, []gap{{11, 0}}, false},
			// missed again: now it waits for xmax 105.
			{snapshot{90, 105}, nil, 12, []gap{{11, 105}}, false},
			// xid 90 commits: the row shows up and the gap closes.
			{snapshot{105, 106}, []int64{11}, 12, nil, false},
		}},
		{"rolled-back gap retires once older transactions end", cursor{high: 10}, []step{
			{snapshot{90, 100}, []int64{12}, 12, []gap{{11, 0}}, false},
			{snapshot{90, 104}, nil, 12, []gap{{11, 104}}, false},
			{snapshot{103, 105}, nil, 12, []gap{{11, 104}}, false}, // 103 may still hold it
			{snapshot{104, 105}, nil, 12, nil, false},              // everything before 104 ended
		}},
		{"fresh cursor is partial through the read that passes its xmax", startCursor(snapshot{50, 60}, 10), []step{
			{snapshot{55, 61}, nil, 10, nil, true},
			{snapshot{60, 62}, nil, 10, nil, true}, // first read after: still partial
			{snapshot{62, 62}, nil, 10, nil, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.start
			for i, s := range tt.steps {
				var partial bool
				c, partial = c.advance(s.snap, s.seen)
				if c.high != s.wantHigh || partial != s.wantPartial || !slices.Equal(gapsOf(c), s.wantGaps) {
					t.Fatalf("step %d: high %d gaps %v partial %v; want %d %v %v",
						i, c.high, c.gaps, partial, s.wantHigh, s.wantGaps, s.wantPartial)
				}
			}
		})
	}
}

// Too many missing ids (a large rolled-back batch) are not tracked one by
// one: the feed turns partial until every running transaction has ended.
func TestCursorGapOverflow(t *testing.T) {
	c := cursor{high: 0}
	next, partial := c.advance(snapshot{10, 20}, []int64{MaxGaps + 100})
	if !partial || len(next.gaps) != MaxGaps || next.partialUntil != 20 {
		t.Fatalf("partial %v, %d gaps, until %d", partial, len(next.gaps), next.partialUntil)
	}
	next, partial = next.advance(snapshot{20, 21}, nil)
	if !partial || next.partialUntil != 0 {
		t.Fatalf("read after the overflow's xmax: partial %v, until %d", partial, next.partialUntil)
	}
}

// advance never changes the cursor it was called on: a cursor handed to
// the watcher stays valid if a later read fails.
func TestCursorAdvanceLeavesInputAlone(t *testing.T) {
	c := cursor{high: 5, gaps: []gap{{3, 0}, {4, 9}}}
	before := gapsOf(c)
	_, _ = c.advance(snapshot{10, 10}, []int64{3, 6})
	if !slices.Equal(c.gaps, before) || c.high != 5 {
		t.Fatalf("input cursor changed: %+v", c)
	}
}

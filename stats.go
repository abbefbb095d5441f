package jobwatch

import "time"

// cause is why a status read happened. Higher values win when causes merge.
type cause uint8

const (
	causeNone cause = iota
	causeWait
	causePoll
	causeNotification
	causeResync
)

// CauseCounts splits a count by why the status read happened.
type CauseCounts struct {
	Wait         uint64 // a new wait, or a not-found grace check
	Notification uint64 // a change notification
	Poll         uint64 // the safety-net poll
	Resync       uint64 // (re)subscribing, or a Resync notification
}

// Total is the sum over all causes.
func (c CauseCounts) Total() uint64 { return c.Wait + c.Notification + c.Poll + c.Resync }

func (c *CauseCounts) add(k cause, n uint64) {
	switch k {
	case causeWait:
		c.Wait += n
	case causeNotification:
		c.Notification += n
	case causePoll:
		c.Poll += n
	case causeResync:
		c.Resync += n
	}
}

// Stats is a snapshot of a Watcher's state and counters since New.
type Stats struct {
	Pending    int  // distinct job ids being waited on
	Waiters    int  // waits in progress (a WaitAll counts each id)
	Listening  bool // a subscription is active now
	PollOnly   bool // the Watcher runs on its poll alone
	ChangeFeed bool // notifications are served by the driver's ChangeFeed

	Notifications        uint64      // notifications received (Resyncs included)
	IgnoredNotifications uint64      // dropped by the subscription (foreign or garbled), if it reports them
	Reads                CauseCounts // status reads and change feed reads, by cause
	ReadErrors           uint64      // failed reads (FetchStatuses and Changes calls)
	IDsRead              uint64      // ids sent in FetchStatuses calls
	FullReads            uint64      // reads of every pending job begun (each in chunks)
	FeedReads            uint64      // ChangeFeed reads (cursor starts included)
	FeedReadErrors       uint64      // failed ChangeFeed reads
	ChangesRead          uint64      // statuses returned by ChangeFeed reads
	SkippedChanges       uint64      // rows the ChangeFeed could not use and skipped
	// MissedChanges counts jobs that a full read settled while the change
	// feed vouched for them, and that the feed did not report: a bug in
	// the driver's feed. It is logged as a warning too.
	MissedChanges uint64
	Resolved      CauseCounts // waits ended, by the cause of the read that ended them
	NotFound      uint64      // ids that ended with ErrNotFound
	NotInstalled  uint64      // ids that ended with ErrNotInstalled
	Reconnects    uint64      // successful Listens after the first
	ListenErrors  uint64      // failed Listen calls and subscriptions that died

	LastError   error // the latest read or listener error, nil if none
	LastErrorAt time.Time
	// Failing is the driver error of now: the latest read's error while
	// reads are failing, else the listener's while it cannot listen; nil
	// once both work again. LastError keeps the latest error after that.
	Failing error
}

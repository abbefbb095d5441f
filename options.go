package jobwatch

import (
	"fmt"
	"log/slog"
	"time"
)

// Defaults of the options, PgQueuer's where PgQueuer has one.
const (
	DefaultRefreshInterval  = 5 * time.Second
	DefaultDebounce         = 50 * time.Millisecond
	DefaultNotFoundGrace    = 30 * time.Second
	DefaultBackoffMin       = 100 * time.Millisecond
	DefaultBackoffMax       = 10 * time.Second
	DefaultBatchSize        = 5000
	DefaultCloseTimeout     = 10 * time.Second
	DefaultCallTimeout      = 30 * time.Second
	DefaultFeedThreshold    = 16
	DefaultFullReadInterval = time.Minute
)

type config struct {
	refresh       time.Duration
	debounce      time.Duration
	settleOnHold  bool
	grace         time.Duration
	logger        *slog.Logger
	backoffMin    time.Duration
	backoffMax    time.Duration
	batchSize     int
	pollOnly      bool
	closeTimeout  time.Duration
	useFeed       bool
	callTimeout   time.Duration
	feedThreshold int
	fullEvery     time.Duration
}

func defaultConfig() config {
	return config{
		refresh:       DefaultRefreshInterval,
		debounce:      DefaultDebounce,
		grace:         DefaultNotFoundGrace,
		logger:        slog.New(slog.DiscardHandler),
		backoffMin:    DefaultBackoffMin,
		backoffMax:    DefaultBackoffMax,
		batchSize:     DefaultBatchSize,
		closeTimeout:  DefaultCloseTimeout,
		useFeed:       true,
		callTimeout:   DefaultCallTimeout,
		feedThreshold: DefaultFeedThreshold,
		fullEvery:     DefaultFullReadInterval,
	}
}

// Option configures a Watcher. Options are validated by New, which returns
// an error matching ErrInvalidOption for a bad one.
type Option func(*config) error

func optErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
}

// WithRefreshInterval sets the safety-net poll, in case a notification was
// lost: every d (±10% jitter) the Watcher reads the driver's change feed
// when the feed can vouch for every change since its cursor, and re-reads
// every pending job otherwise (no feed, few pending jobs, a feed that is
// starting, failing or reported Partial). d must be positive. Default 5s.
func WithRefreshInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return optErr("refresh interval must be positive, got %s", d)
		}
		c.refresh = d
		return nil
	}
}

// WithDebounce sets how long the Watcher gathers notifications and new waits
// before one status read. 0 reads at once. d must not be negative.
// Default 50ms.
func WithDebounce(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return optErr("debounce must not be negative, got %s", d)
		}
		c.debounce = d
		return nil
	}
}

// WithSettleOnHold makes a held (failed) job end a wait, with state Failed.
// Off by default, as in PgQueuer: a held job may still be requeued.
func WithSettleOnHold(on bool) Option {
	return func(c *config) error {
		c.settleOnHold = on
		return nil
	}
}

// WithNotFoundGrace sets how long an id may stay unknown to the database
// before its wait ends with ErrNotFound. The clock starts when the wait
// starts; only successful status reads count as "not found". 0 ends the wait
// on the first read that does not find the job. d must not be negative.
// Default 30s.
func WithNotFoundGrace(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return optErr("not-found grace must not be negative, got %s", d)
		}
		c.grace = d
		return nil
	}
}

// WithLogger sets where the Watcher reports listener and read failures,
// which no caller receives as an error. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return optErr("nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithBackoff bounds the jittered exponential backoff used between failed
// status reads and between listener reconnects: the first retry waits about
// min, each further one twice as long, never more than max. Both must be
// positive and min <= max. Default 100ms to 10s.
func WithBackoff(min, max time.Duration) Option {
	return func(c *config) error {
		if min <= 0 || max <= 0 || min > max {
			return optErr("backoff needs 0 < min <= max, got %s and %s", min, max)
		}
		c.backoffMin, c.backoffMax = min, max
		return nil
	}
}

// WithBatchSize caps how many ids one FetchStatuses call carries. n must be
// positive. Default 5000.
func WithBatchSize(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return optErr("batch size must be positive, got %d", n)
		}
		c.batchSize = n
		return nil
	}
}

// WithPollOnly never calls Driver.Listen: the Watcher relies on its poll
// alone (PgBouncer in transaction pooling, a read replica). Set the refresh
// interval to the latency you can accept.
func WithPollOnly() Option {
	return func(c *config) error {
		c.pollOnly = true
		return nil
	}
}

// WithCloseTimeout bounds how long Close waits for the driver to give back
// the goroutines the Watcher started. d must be positive. Default 10s.
func WithCloseTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return optErr("close timeout must be positive, got %s", d)
		}
		c.closeTimeout = d
		return nil
	}
}

// WithChangeFeed says whether to use the driver's ChangeFeed when it has
// one (default true). Without it every notification re-reads every pending
// job, as PgQueuer does; turning it off is for comparison and diagnosis.
func WithChangeFeed(on bool) Option {
	return func(c *config) error {
		c.useFeed = on
		return nil
	}
}

// WithCallTimeout bounds each call the Watcher makes to its driver that
// should answer promptly: a status read, a change read, a Listen (not the
// wait for the next notification). A call that runs over fails, and is
// retried with backoff, so a connection that went silently dead cannot
// stall the Watcher. d must be positive. Default 30s.
func WithCallTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return optErr("call timeout must be positive, got %s", d)
		}
		c.callTimeout = d
		return nil
	}
}

// WithFeedThreshold sets how many jobs must be pending before a
// notification is served by the driver's change feed. With fewer, reading
// the pending jobs by id is cheaper than reading the changes (one indexed
// lookup each, and the lowest latency); with more, the feed's cost does not
// grow with them. 0 always uses the feed; n must not be negative.
// Default 16.
func WithFeedThreshold(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return optErr("feed threshold must not be negative, got %d", n)
		}
		c.feedThreshold = n
		return nil
	}
}

// WithFullReadInterval sets how often every pending job is re-read even
// while the change feed vouches for every change (±10% jitter). It is the
// last net under the feed: a job this read settles is a change the feed
// missed, counted in Stats.MissedChanges and logged as a warning. The read
// goes in chunks of the batch size, between the reads notifications ask
// for, so they never wait behind it. d must be positive. Default 1m.
func WithFullReadInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return optErr("full-read interval must be positive, got %s", d)
		}
		c.fullEvery = d
		return nil
	}
}

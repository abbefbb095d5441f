package fake

// DefaultBuffer is the number of notifications a subscription holds before
// an overflow collapses into one Resync.
const DefaultBuffer = 64

// Option configures a Backend in New.
type Option func(*config)

type config struct {
	buffer    int
	notifyIDs bool
}

func defaultConfig() config { return config{buffer: DefaultBuffer} }

// WithBuffer sets how many notifications each subscription buffers
// (default DefaultBuffer). A value below 1 is treated as 1, so the option
// can never make New fail.
func WithBuffer(n int) Option {
	return func(c *config) {
		if n < 1 {
			n = 1
		}
		c.buffer = n
	}
}

// WithNotifyIDs makes each commit's notification name the jobs it changed
// (in the order they were first changed), as a backend with a richer
// trigger could. By default notifications name no job, as PgQueuer's
// trigger does.
func WithNotifyIDs() Option {
	return func(c *config) { c.notifyIDs = true }
}

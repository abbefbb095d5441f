package jobwatch

import (
	"math/rand/v2"
	"time"
)

// backoff returns the wait before retry number attempt (1-based): min
// doubled per attempt, capped at max, with ±20% jitter so that many
// watchers do not retry in step.
func backoff(attempt int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = jitter(d, 0.2)
	if d > max {
		d = max
	}
	return d
}

// jitter spreads d uniformly over d±frac.
func jitter(d time.Duration, frac float64) time.Duration {
	if d <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 - frac + 2*frac*rand.Float64()))
}

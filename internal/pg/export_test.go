package pg

import "time"

// SetRetryForTest shortens the retry delays and installs a hook; the
// returned func restores both.
func SetRetryForTest(delays []time.Duration, hook func(attempt int, err error)) func() {
	oldD, oldH := retryDelays, retryHook
	retryDelays, retryHook = delays, hook
	return func() { retryDelays, retryHook = oldD, oldH }
}

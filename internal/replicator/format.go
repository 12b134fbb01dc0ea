package replicator

import "fmt"

// humanBytes formats n as B, kB, MB, GB, TB (powers of 1024).
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// HumanBytes is humanBytes for other packages.
func HumanBytes(n int64) string { return humanBytes(n) }

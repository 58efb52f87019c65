//go:build !race

package cluster_test

// raceEnabled reports whether the race detector is on.
const raceEnabled = false

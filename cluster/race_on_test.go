//go:build race

package cluster_test

// raceEnabled reports whether the race detector is on: it slows memberlist
// enough that 200 nodes in one process on a small machine cannot keep up
// with their own failure detection (see TestLargeClusterConverges).
const raceEnabled = true

//go:build !norawio

package rawio

// enabled: Read, Write and Writev make their own calls on a *net.TCPConn.
// The norawio build tag turns that off, for A/B measurements.
const enabled = true

//go:build !unix

package sysmon

// KeepAwake does nothing where there is no exec: the runtime keeps its own
// behaviour.
func KeepAwake() error { return nil }
